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
    hosts: int = 1        # compute hosts: [filter_scheduler] host_subset_size

    def db_url(self, name: str) -> str:
        return f"postgresql+psycopg2://root@{self.db_host}:{self.db_port}/{self.db_prefix}_{name}"

    @property
    def databases(self) -> tuple[str, ...]:
        return tuple(f"{self.db_prefix}_{n}" for n in ("api", "cell0", "cell1", "placement"))

    @property
    def transport_url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:5672/{self.rabbit_vhost}"


# Database pools: oslo.db's defaults (5 + 50 overflow per engine), on a private PostgreSQL sized for them
# (bench/nova_cloud.py PrivatePostgres, max_connections 1000). Smaller pools deadlocked Placement: a claim that
# meets a provider generation conflict re-reads the provider in an *independent* transaction
# (placement/objects/allocation.py replace_all) while its own transaction holds a connection, so 8 threads on a
# pool of 8 + 0 waited 30 s each for a ninth ("QueuePool limit of size 8 ... reached").
SCHEDULER = {
    # Nova 34 builds the scheduler's HostStates afresh from the compute_nodes rows on every request
    # (nova/scheduler/host_manager.py _get_host_states): in a burst those rows lag the claims, every host weighs
    # the same, and the stable sort sent every boot to one host (whose long_task pool of max_concurrent_builds = 10
    # then queued them, and whose provider's generation conflicts filled Placement's pool). Nova's documented
    # answer for many hosts with the same best weight: shuffle them.
    "shuffle_best_same_weighed_hosts": "true",
    # With the shuffle alone (N = 200, 10 hosts) boots still piled up 3 to 45 a host: a host whose builds queue
    # has not claimed them yet, so its compute_nodes row shows the most free RAM and it wins the next ones too,
    # while its claims run one at a time (the resource tracker's lock): builds waited ~100 s there. Nova's
    # documented knob against several schedulers picking the same host: choose at random among the N best.
    # N = the number of hosts (identical fake hosts: no better host to lose). Set by NovaDeployment.hosts.
}


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


def _nova_sections(d: NovaDeployment) -> dict[str, dict[str, str]]:
    return {
        "DEFAULT": {
            "transport_url": d.transport_url, "state_path": str(d.state_dir / "state"),
            "instances_path": str(d.state_dir / "instances"), "compute_driver": "fake.FakeDriver",
            "use_stderr": "true", "debug": "false", "heal_instance_info_cache_interval": "-1",
        },
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": d.db_url("api")},
        "database": {"connection": d.db_url("cell1")},
        "filter_scheduler": {**SCHEDULER, "host_subset_size": str(d.hosts)},
        "keystone_authtoken": {"www_authenticate_uri": f"{d.aux_url}/identity", **_password_auth(d)},
        # connect_retries (keystoneauth's adapter option, default 0): gunicorn closes a keep-alive connection
        # idle for 2 s, and a scheduler or compute reusing it just then got "Connection reset by peer"; without
        # a retry the scheduler answered NoValidHost (5 of 200 boots in ERROR) and computes rescheduled.
        "placement": {"auth_type": "admin_token", "endpoint": f"http://127.0.0.1:{d.placement_port}",
                      "token": "admin:admin", "connect_retries": "3"},
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
    }


def nova_conf(d: NovaDeployment) -> str:
    """nova.conf of nova-api, -conductor and -scheduler."""
    return _render(_nova_sections(d))


def compute_conf(d: NovaDeployment, host: str) -> str:
    """The whole nova.conf of one nova-compute: its own ``host``, and no database connection (Nova's computes
    reach the DB through the conductor; with ``[api_database] connection`` set, Nova 34's compute RPC version
    check tries the API database and logs "No DB access allowed in nova-compute")."""
    sections = {k: v for k, v in _nova_sections(d).items() if k not in ("database", "api_database")}
    return _render({**sections, "DEFAULT": {**sections["DEFAULT"], "host": host}})


def placement_conf(d: NovaDeployment) -> str:
    return _render({
        "DEFAULT": {"use_stderr": "true", "debug": "false"},
        "api": {"auth_strategy": "noauth2"},
        "placement_database": {"connection": d.db_url("placement")},
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
        paths[f"compute:{host}"].write_text(compute_conf(d, host))
    return paths
