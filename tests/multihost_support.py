"""A cloud spread over "machines" on one (issue 25): the controller (API, conductor, scheduler, metadata, ...; a
PostgreSQL database and a Redis of its own) in the root network namespace, reachable only at a bridge address, and
compute hosts each in a network namespace of its own (tests/netns_support.py), with their own state directories,
no database URL and the database ports rejected by their firewall, set up by tools/stratus-node as README
"Several machines" says. Used by tests/functional/test_multihost.py (fake driver) and
tests/integration/test_libvirt_hosts_in_namespaces.py (real guests)."""
from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.stack import REPO, Backend, Stack, free_port
from tests import netns_support
from tests.outage_support import Client, PrivateBackend, PrivateRedis

DB_PORTS = (5432, 3306)


@contextlib.contextmanager
def host_network(hosts: tuple[str, ...]) -> Iterator[netns_support.HostNetwork]:
    """A namespace per host, the database ports blocked in each; skipped loudly where namespaces (or a private
    Redis) cannot be had."""
    if missing := netns_support.unavailable() or PrivateRedis.available():
        pytest.skip(f"!!! NETWORK NAMESPACES UNAVAILABLE: {missing} !!!")
    net = netns_support.HostNetwork()
    try:
        for host in hosts:
            net.add(host)
            net.block(host, DB_PORTS)
        yield net
    finally:
        net.close()


@contextlib.contextmanager
def controller(net: netns_support.HostNetwork, state_dir: Path, hosts: tuple[str, ...], name: str,
               processes: tuple[str, ...] = ("api", "conductor", "scheduler", "metadata"),
               extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The controller's processes at the bridge address, on a PostgreSQL database and a private Redis; its
    metadata service serves guests only through their hosts' proxies (metadata_direct_hosts none). Checks that
    every host's namespace reaches the API. Stops it all afterwards."""
    redis = PrivateRedis(durable=False, address=net.controller)
    database = Backend(f"{name}-pg", "postgresql", "filesystem").own()
    stack = None
    try:
        redis.start()
        backend = PrivateBackend(f"{name}-pg-redis", "postgresql", "redis", db_url=database.database_url(),
                                 mq_url=redis.url)
        metadata = f"{net.controller}:{free_port()}"
        stack = Stack(state_dir, backend, compute_hosts=",".join(hosts), processes=processes,
                      address=net.controller,
                      extra_env={"STRATUS_SERVICE_DOWN_TIME": "8", "STRATUS_METADATA_BIND": metadata,
                                 "STRATUS_METADATA_URL": f"http://{metadata}",
                                 "STRATUS_METADATA_PROXY_SHARED_SECRET": secrets.token_hex(16),
                                 "STRATUS_METADATA_DIRECT_HOSTS": "none", **(extra_env or {})})
        stack.redis = redis
        stack.start()
        for host in hosts:  # the namespace reaches the controller's bridge address
            probe = net.run(host, sys.executable, "-c", "import socket,sys; s=socket.socket(); s.settimeout(3); "
                            f"sys.exit(s.connect_ex(('{net.controller}', {stack.port})))")
            assert probe.returncode == 0, probe
        yield stack
    finally:
        if stack:
            stack.stop()
        redis.close()
        database.cleanup()


def start_compute(stack: Stack, net: netns_support.HostNetwork, host: str, node_dir: Path,
                  env: dict[str, str] | None = None) -> None:
    """README "Several machines": `tools/stratus-node add-compute` on the controller writes HOST.env; the node runs
    `tools/stratus-node compute HOST.env` in its namespace with nothing else of the controller's: no database
    URL, no state dir (``node_dir``: its own disk). ``env``: the node's own settings (libvirt URI, ...)."""
    ns, address = net.hosts[host]
    node_dir.mkdir(exist_ok=True)
    added = subprocess.run([str(REPO / "tools/stratus-node"), "add-compute", host, address], cwd=REPO,
                           env={**stack.env, "STRATUS_NODE_ENV_DIR": str(node_dir),
                                "STRATUS_NODE_METADATA_URL": stack.env["STRATUS_METADATA_URL"]},
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    env_file = (node_dir / f"{host}.env").read_text()
    assert "DATABASE" not in env_file and f"compute-{host}:" in env_file, env_file  # its own broker user
    node_env = {"PATH": stack.env["PATH"], "HOME": str(node_dir), "STRATUS_STATE_DIR": str(node_dir / "state"),
                "STRATUS_NODE_SKIP_INSTALL": "1", "STRATUS_REPORT_INTERVAL": "2", "PYTHONUNBUFFERED": "1",
                **(env or {})}
    log = open(stack.state_dir / f"compute-{host}.log", "ab")
    stack.procs[f"compute-{host}"] = subprocess.Popen(
        ["ip", "netns", "exec", ns, str(REPO / "tools/stratus-node"), "compute", str(node_dir / f"{host}.env")],
        cwd=REPO, env=node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()


def service(api: Client, host: str) -> dict:
    r = requests.get(f"{api.url}/os-services", params={"binary": "nova-compute", "host": host},
                     headers=api.headers, timeout=30)
    r.raise_for_status()
    return r.json()["services"][0]


def wait(check, timeout: float, what: str, stack: Stack):
    """``check()``'s first true result within ``timeout`` s; else fail with every process's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s\n" + "\n".join(
        f"--- {name}\n{stack.log(name)[-2500:]}" for name in stack.procs))


def wait_hosts_up(stack: Stack, hosts: tuple[str, ...], timeout: float = 90) -> Client:
    """Wait until every host registered and is up; a client of the API."""
    wait(lambda: stack.registered_hosts() >= len(hosts), timeout, "every host registered", stack)
    api = Client(stack)
    for host in hosts:
        assert wait(lambda: service(api, host)["state"] == "up", 60, f"{host} up", stack)
    return api


def boot_on(api: Client, image: str, host: str, name: str, networks: str = "none", flavor: str = "42") -> str:
    """Boot ``name`` on ``host`` (availability zone nova:HOST); its id."""
    r = requests.post(f"{api.url}/servers", headers=api.headers, timeout=60, json={"server": {
        "name": name, "imageRef": image, "flavorRef": flavor, "networks": networks,
        "availability_zone": f"nova:{host}"}})
    assert r.status_code == 202, r.text
    return r.json()["server"]["id"]
