"""Configuration files of the upstream Nova + Placement deployment that bench/peer_nova.py runs side by side.

Pure functions (no I/O but the files written by ``write``), so the generated configuration is unit-tested.

Nova 34 has no ``noauth2`` pipeline any more (api-paste.ini only has ``keystone``): its API validates tokens with
keystonemiddleware against Stratus's own Identity API (an auxiliary Stratus API process, which also serves
Nova's Glance and Neutron endpoints). Placement runs with ``auth_strategy = noauth2`` and Nova reaches it with
keystoneauth's ``admin_token`` plugin (token ``admin:admin``), so no Keystone on that leg.
"""
from __future__ import annotations

import configparser
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NovaDeployment:
    """Everything the generated files name: where the state lives, the ports, the databases and the peers."""

    state_dir: Path
    api_port: int
    placement_port: int
    aux_url: str          # the Stratus API serving Identity (for keystonemiddleware), Image and Networking
    admin_password: str   # Stratus's admin, the service user keystonemiddleware signs in as
    db_prefix: str = "peer_nova"
    rabbit_vhost: str = "stratus-peer-nova"
    db_host: str = "127.0.0.1"
    db_port: int = 5432

    def db_url(self, name: str) -> str:
        return f"postgresql+psycopg2://root@{self.db_host}:{self.db_port}/{self.db_prefix}_{name}"

    @property
    def databases(self) -> tuple[str, ...]:
        return tuple(f"{self.db_prefix}_{n}" for n in ("api", "cell0", "cell1", "placement"))

    @property
    def transport_url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:5672/{self.rabbit_vhost}"


# Nova's databases live on a private PostgreSQL (bench/nova_cloud.py PrivatePostgres, max_connections 400): with
# oslo.db's default pools (5 + 50 overflow per engine, an engine per cell in every process) Nova filled the shared
# server's 100 connections. Bounded here too, so 2 API + 2 conductor + 2 scheduler workers stay under 400.
DB_POOL = {"max_pool_size": "5", "max_overflow": "10"}
# Placement has one engine a process and gunicorn's 8 threads: a connection each (2 + 1 timed out at 30 s).
PLACEMENT_DB_POOL = {"max_pool_size": "8", "max_overflow": "0"}


def _render(sections: dict[str, dict[str, str]]) -> str:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keep the option names' case
    for name, opts in sections.items():
        if name != "DEFAULT":
            cp.add_section(name)
        for k, v in opts.items():
            cp.set(name, k, v)
    buf = io.StringIO()
    cp.write(buf)
    return buf.getvalue()


def _password_auth(d: NovaDeployment) -> dict[str, str]:
    return {"auth_url": f"{d.aux_url}/identity", "auth_type": "password", "username": "admin",
            "password": d.admin_password, "project_name": "admin", "user_domain_name": "Default",
            "project_domain_name": "Default", "region_name": "RegionOne"}


def nova_conf(d: NovaDeployment) -> str:
    """nova.conf shared by nova-api, -conductor, -scheduler and every nova-compute (each adds its ``host``)."""
    return _render({
        "DEFAULT": {
            "transport_url": d.transport_url, "state_path": str(d.state_dir / "state"),
            "instances_path": str(d.state_dir / "instances"), "compute_driver": "fake.FakeDriver",
            "use_stderr": "true", "debug": "false", "heal_instance_info_cache_interval": "-1",
        },
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": d.db_url("api"), **DB_POOL},
        "database": {"connection": d.db_url("cell1"), **DB_POOL},
        "keystone_authtoken": {"www_authenticate_uri": f"{d.aux_url}/identity", **_password_auth(d)},
        "placement": {"auth_type": "admin_token", "endpoint": f"http://127.0.0.1:{d.placement_port}",
                      "token": "admin:admin"},
        "glance": {"endpoint_override": f"{d.aux_url}/image"},
        # The compute's admin client (network info of an instance, on delete) signs in to Stratus's Identity.
        "neutron": {"endpoint_override": f"{d.aux_url}/networking", **_password_auth(d)},
        "oslo_concurrency": {"lock_path": str(d.state_dir / "lock")},
        "oslo_messaging_notifications": {"driver": "noop"},
        "wsgi": {"api_paste_config": str(d.state_dir / "etc" / "api-paste.ini")},
        "quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
        # Hosts are mapped once by `nova-manage cell_v2 discover_hosts`, not by a periodic task.
        "scheduler": {"discover_hosts_in_cells_interval": "-1"},
        "vnc": {"enabled": "false"},
        "cinder": {"os_region_name": "RegionOne"},
    })


def compute_conf(host: str) -> str:
    """The per-process override of one nova-compute: its own ``host`` (each is a separate compute node)."""
    return _render({"DEFAULT": {"host": host}})


def placement_conf(d: NovaDeployment) -> str:
    return _render({
        "DEFAULT": {"use_stderr": "true", "debug": "false"},
        "api": {"auth_strategy": "noauth2"},
        "placement_database": {"connection": d.db_url("placement"), **PLACEMENT_DB_POOL},
    })


def gunicorn_conf(app: str, bind: str, settings: dict[str, object]) -> str:
    """A gunicorn.conf.py naming the WSGI app, for apps that parse the command line themselves (Nova's)."""
    lines = [f"wsgi_app = {app!r}", f"bind = [{bind!r}]"] + [f"{k} = {v!r}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def write(d: NovaDeployment, api_paste_src: Path, hosts: list[str]) -> dict[str, Path]:
    """Write the files under ``d.state_dir/etc``; returns their paths by role."""
    etc = d.state_dir / "etc"
    for sub in (etc, etc / "placement", d.state_dir / "state", d.state_dir / "instances", d.state_dir / "lock"):
        sub.mkdir(parents=True, exist_ok=True)
    paths = {"nova": etc / "nova.conf", "api-paste": etc / "api-paste.ini",
             "placement": etc / "placement" / "placement.conf"}
    paths["nova"].write_text(nova_conf(d))
    paths["api-paste"].write_text(api_paste_src.read_text())
    paths["placement"].write_text(placement_conf(d))
    for host in hosts:
        paths[f"compute:{host}"] = etc / f"compute-{host}.conf"
        paths[f"compute:{host}"].write_text(compute_conf(host))
    return paths
