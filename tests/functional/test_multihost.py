"""Compute hosts on other machines (issue 25), each host in its own network namespace: the controller (API,
conductor, scheduler, PostgreSQL, a Redis of its own) is in the root namespace and reachable only at a bridge
address; two compute workers run in namespaces of their own, with their own state directories, no database URL and
the database ports rejected by their firewall. They register, boot, print console output, cold-migrate a server
from one host to the other, and delete it; a host cut off from the controller goes down in the service list (its
servers' host_status UNKNOWN) and comes back when the partition heals, and builds again."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from harness.stack import NO_DATABASE_URL, REPO, Backend, Stack
from tests import netns_support
from tests.outage_support import Client, PrivateBackend, PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]
HOSTS = ("mh-a", "mh-b")
DB_PORTS = (5432, 3306)


@pytest.fixture
def network():
    if missing := netns_support.unavailable() or PrivateRedis.available():
        pytest.skip(f"!!! NETWORK NAMESPACES UNAVAILABLE: {missing} !!!")
    net = netns_support.HostNetwork()
    try:
        for host in HOSTS:
            net.add(host)
            net.block(host, DB_PORTS)
        yield net
    finally:
        net.close()


def _start_compute(stack: Stack, net: netns_support.HostNetwork, host: str) -> None:
    ns, address = net.hosts[host]
    state = stack.state_dir.parent / host  # a disk of its own: nothing of the controller's state dir
    state.mkdir()
    env = {**stack.env, "STRATUS_COMPUTE_HOSTS": host, "STRATUS_STATE_DIR": str(state),
           "STRATUS_DATABASE_URL": NO_DATABASE_URL, "STRATUS_MY_IP": address}
    log = open(stack.state_dir / f"compute-{host}.log", "ab")
    stack.procs[f"compute-{host}"] = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tasks.compute_worker"], cwd=REPO, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    log.close()


def _service(api: Client, host: str) -> dict:
    r = requests.get(f"{api.url}/os-services", params={"binary": "nova-compute", "host": host},
                     headers=api.headers, timeout=30)
    r.raise_for_status()
    return r.json()["services"][0]


def _wait(check, timeout: float, what: str, stack: Stack):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s\n" + "\n".join(
        f"--- {name}\n{stack.log(name)[-2500:]}" for name in stack.procs))


def _boot_on(api: Client, image: str, host: str, name: str) -> str:
    r = requests.post(f"{api.url}/servers", headers=api.headers, timeout=60, json={"server": {
        "name": name, "imageRef": image, "flavorRef": "42", "networks": "none",
        "availability_zone": f"nova:{host}"}})
    assert r.status_code == 202, r.text
    return r.json()["server"]["id"]


def test_compute_hosts_in_their_own_namespaces(network, tmp_path):
    net = network
    redis = PrivateRedis(durable=False, address=net.controller)
    database = Backend("multihost-pg", "postgresql", "filesystem").own()
    stack = None
    try:
        redis.start()
        backend = PrivateBackend("multihost-pg-redis", "postgresql", "redis", db_url=database.database_url(),
                                 mq_url=redis.url)
        stack = Stack(tmp_path / "controller", backend, compute_hosts=",".join(HOSTS),
                      processes=("api", "conductor", "scheduler"), address=net.controller,
                      extra_env={"STRATUS_SERVICE_DOWN_TIME": "8"})
        stack.start()
        for host in HOSTS:
            # the namespace reaches the controller's bridge address, and nothing at the database ports
            probe = net.run(host, sys.executable, "-c", "import socket,sys; s=socket.socket(); s.settimeout(3); "
                            f"sys.exit(s.connect_ex(('{net.controller}', {stack.port})))")
            assert probe.returncode == 0, probe
            _start_compute(stack, net, host)
        _wait(lambda: stack.registered_hosts() >= 2, 90, "both hosts registered", stack)
        api = Client(stack)
        for host in HOSTS:
            assert _wait(lambda: _service(api, host)["state"] == "up", 60, f"{host} up", stack)

        image = api.image()
        server = _boot_on(api, image, "mh-a", "mh-1")
        settled = api.wait_settled({server}, 90)[server]
        assert settled["status"] == "ACTIVE" and settled["OS-EXT-SRV-ATTR:host"] == "mh-a", settled
        action = f"{api.url}/servers/{server}/action"
        log = requests.post(action, headers=api.headers, json={"os-getConsoleOutput": {"length": 5}}, timeout=60)
        assert log.status_code == 200 and log.json()["output"], log.text

        moved = requests.post(action, headers=api.headers, json={"migrate": {"host": "mh-b"}}, timeout=60)
        assert moved.status_code == 202, moved.text
        resized = api.wait_settled({server}, 90)[server]
        assert resized["status"] == "VERIFY_RESIZE" and resized["OS-EXT-SRV-ATTR:host"] == "mh-b", resized
        confirmed = requests.post(action, headers=api.headers, json={"confirmResize": None}, timeout=60)
        assert confirmed.status_code == 204, confirmed.text
        assert api.wait_settled({server}, 90)[server]["status"] == "ACTIVE"

        # Partition: mh-b cannot reach the controller (broker, API) and the controller cannot reach it.
        cut = ["OUTPUT", "-d", net.controller, "-j", "DROP"]
        assert net.run("mh-b", "iptables", "-I", *cut).returncode == 0
        _wait(lambda: _service(api, "mh-b")["state"] == "down", 60, "mh-b down while cut off", stack)
        shown = requests.get(f"{api.url}/servers/{server}", headers=api.headers, timeout=30).json()["server"]
        assert shown["host_status"] == "UNKNOWN" and shown["status"] == "ACTIVE", shown
        assert _service(api, "mh-a")["state"] == "up"
        assert net.run("mh-b", "iptables", "-D", *cut).returncode == 0
        _wait(lambda: _service(api, "mh-b")["state"] == "up", 90, "mh-b up after the partition healed", stack)
        again = _boot_on(api, image, "mh-b", "mh-2")
        assert api.wait_settled({again}, 90)[again]["status"] == "ACTIVE"

        for sid in (server, again):
            assert api.delete(sid) == 204
        assert not api.wait_gone(60)
        for host in HOSTS:
            text = stack.log(f"compute-{host}")
            assert "Traceback" not in text and "psycopg" not in text, text[-4000:]
    finally:
        if stack:
            stack.stop()
        redis.close()
        database.cleanup()
