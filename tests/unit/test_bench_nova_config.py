"""The configuration bench/peer_nova.py gives upstream Nova and Placement: parseable INI with the options Nova's
install guide requires (databases per cell, transport URL, the placement and identity sections), noauth2 for
Placement, the fake driver and each nova-compute's own host."""
from __future__ import annotations

import configparser
from pathlib import Path

from bench import nova_cloud, nova_config


def _deployment(tmp_path: Path) -> nova_config.NovaDeployment:
    return nova_config.NovaDeployment(state_dir=tmp_path, api_port=18774, placement_port=18778,
                                      aux_url="http://127.0.0.1:9999", admin_password="pw")


def _ini(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    return cp


def test_nova_conf_names_every_service_nova_needs(tmp_path):
    cp = _ini(nova_config.nova_conf(_deployment(tmp_path)))
    assert cp["DEFAULT"]["compute_driver"] == "fake.FakeDriver"
    assert cp["DEFAULT"]["transport_url"] == "rabbit://guest:guest@127.0.0.1:5672/stratus-peer-nova"
    assert cp["api_database"]["connection"] == "postgresql+psycopg2://root@127.0.0.1:5432/peer_nova_api"
    assert cp["database"]["connection"] == "postgresql+psycopg2://root@127.0.0.1:5432/peer_nova_cell1"
    assert cp["placement"]["auth_type"] == "admin_token" and cp["placement"]["endpoint"].endswith(":18778")
    assert int(cp["placement"]["connect_retries"]) > 0  # a reset keep-alive connection is retried, not NoValidHost
    assert cp["keystone_authtoken"]["auth_url"] == "http://127.0.0.1:9999/identity"
    assert cp["neutron"]["auth_type"] == "password" and cp["neutron"]["password"] == "pw"
    assert cp["glance"]["endpoint_override"] == "http://127.0.0.1:9999/image"
    assert cp["quota"]["instances"] == "-1"  # 200 servers in one project


def test_placement_noauth_and_own_database(tmp_path):
    cp = _ini(nova_config.placement_conf(_deployment(tmp_path)))
    assert cp["api"]["auth_strategy"] == "noauth2"
    assert cp["placement_database"]["connection"].endswith("/peer_nova_placement")


def test_write_gives_each_compute_its_host(tmp_path):
    paste = tmp_path / "paste.ini"
    paste.write_text("[composite:osapi_compute]\n")
    paths = nova_config.write(_deployment(tmp_path / "s"), paste, ["h-0", "h-1"])
    assert [_ini(paths[f"compute:{h}"].read_text())["DEFAULT"]["host"] for h in ("h-0", "h-1")] == ["h-0", "h-1"]
    compute = _ini(paths["compute:h-0"].read_text())
    assert compute["DEFAULT"]["compute_driver"] == "fake.FakeDriver"  # a whole nova.conf, used alone
    assert not compute.has_section("database") and not compute.has_section("api_database")  # no DB credentials
    assert paths["api-paste"].read_text() == paste.read_text()
    assert _ini(paths["nova"].read_text())["wsgi"]["api_paste_config"] == str(paths["api-paste"])


def test_gunicorn_conf_is_python_naming_the_app():
    text = nova_config.gunicorn_conf("nova.wsgi.osapi_compute:application", "127.0.0.1:1", nova_cloud.GUNICORN)
    ns: dict = {}
    exec(compile(text, "gunicorn.conf.py", "exec"), ns)
    assert ns["wsgi_app"] == "nova.wsgi.osapi_compute:application" and ns["bind"] == ["127.0.0.1:1"]
    assert ns["workers"] == 2 and ns["threads"] == 8


def test_database_pools_are_oslo_db_defaults(tmp_path):
    """No pool bound: Placement's claim retry takes a second connection (an independent read) while holding one,
    so a pool no larger than its threads deadlocks; the private PostgreSQL is sized for the defaults instead."""
    d = _deployment(tmp_path)
    nova, placement = _ini(nova_config.nova_conf(d)), _ini(nova_config.placement_conf(d))
    for section in (nova["database"], nova["api_database"], placement["placement_database"]):
        assert "max_pool_size" not in section and "max_overflow" not in section


def test_scheduler_shuffles_hosts_of_equal_weight(tmp_path):
    """Nova's documented remedies for many hosts with the same best weight (a burst on identical fake hosts)."""
    cp = _ini(nova_config.nova_conf(_deployment(tmp_path)))
    assert cp.getboolean("filter_scheduler", "shuffle_best_same_weighed_hosts")
    d = nova_config.NovaDeployment(state_dir=tmp_path, api_port=1, placement_port=2, aux_url="http://x",
                                   admin_password="pw", hosts=10)
    assert _ini(nova_config.nova_conf(d))["filter_scheduler"]["host_subset_size"] == "10"  # random among all
