"""Guests on any host (issue 25 item 3), against real processes: two fake compute workers that report different
addresses (127.0.0.2 and 127.0.0.3, loopback aliases Linux answers without set-up), each with its per-host
metadata proxy (no database URL, as the workers), and one controller (API, conductor, scheduler, noVNC proxy,
metadata service; SQLite + filesystem broker).

- A console token records the address of the guest's host, and the noVNC proxy connects there: each address has
  its own stand-in VNC server on the fake driver's console port, and nothing listens on 127.0.0.1 at that port.
- Console output and diagnostics reach the worker of the guest's host (the other worker does not know it).
- Metadata: a guest is identified by its address relayed by its host's proxy; a request relayed by host A from
  the address of a guest on host B is refused, as is one signed with another host's key.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
import requests

from harness.stack import BACKENDS, NO_DATABASE_URL, Stack, console_proxy_env, free_port, wait_port
from metadata.signing import host_key, host_signature
from tests.functional.test_consoles import active_server, connect, token_of

pytestmark = pytest.mark.services

SECRET = "per-host-metadata-secret-for-tests"
CIDR = "127.79.0.0/24"
HOSTS = {"host-a": "127.0.0.2", "host-b": "127.0.0.3"}
MV = {"OpenStack-API-Version": "compute 2.96"}


def _wait_listening(address: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {address}:{port}"
            time.sleep(0.1)


class VncStandIn:
    """A TCP listener on one host address greeting like a VNC server, with its own banner."""

    def __init__(self, address: str, port: int):
        self.banner = f"RFB 003.008\n{address}".encode()
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(self.banner)
                conn.settimeout(5)
                try:
                    conn.recv(64)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    env, novnc, _spice = console_proxy_env()
    md_port, proxy_port, console_port = free_port(), free_port(), free_port()
    env.update({"STRATUS_NETWORK_CIDR": CIDR, "STRATUS_METADATA_BIND": f"127.0.0.1:{md_port}",
                "STRATUS_METADATA_PROXY_SHARED_SECRET": SECRET, "STRATUS_METADATA_CACHE_TTL": "0",
                "STRATUS_FAKE_CONSOLE_PORT": str(console_port),
                # host-a stands for a compute on the controller's machine, whose guests reach the service directly
                "STRATUS_METADATA_DIRECT_HOSTS": "host-a"})
    st = Stack(tmp_path_factory.mktemp("any-host"), BACKENDS["sqlite-filesystem"], compute_hosts=",".join(HOSTS),
               extra_env=env, processes=("api", "conductor", "scheduler", "novncproxy", "metadata"))
    try:
        st.start()
        for host, address in HOSTS.items():
            st.start_process(f"compute-{host}", "python -m tasks.compute_worker", env={
                "STRATUS_COMPUTE_HOSTS": host, "STRATUS_MY_IP": address,
                "STRATUS_METADATA_PROXY_SHARED_SECRET": ""})
            # The host's metadata proxy: its own key only, and no database.
            st.start_process(f"mdproxy-{host}", "python -m metadata.proxy", env={
                "STRATUS_DATABASE_URL": NO_DATABASE_URL, "STRATUS_METADATA_PROXY_SHARED_SECRET": "",
                "STRATUS_METADATA_URL": f"http://127.0.0.1:{md_port}", "STRATUS_METADATA_PROXY_HOST": host,
                "STRATUS_METADATA_PROXY_BIND": f"{address}:{proxy_port}",
                "STRATUS_METADATA_HOST_KEY": host_key(SECRET, host)})
        deadline = time.monotonic() + 60
        while st.registered_hosts() < len(HOSTS):
            assert time.monotonic() < deadline, "\n".join(st.log(f"compute-{h}")[-2000:] for h in HOSTS)
            time.sleep(0.2)
        wait_port(novnc)
        _wait_listening("127.0.0.1", md_port)
        for address in HOSTS.values():
            _wait_listening(address, proxy_port)
    except Exception:
        st.stop()
        raise
    st.novnc_port, st.md_port, st.proxy_port, st.console_port = novnc, md_port, proxy_port, console_port
    st.session = requests.Session()
    st.session.headers.update({"X-Auth-Token": st.admin_token(), **MV})
    yield st
    st.stop()
    st.wipe()


def _boot(st, name: str, host: str) -> dict:
    uuid = active_server(st, name, networks="auto", host=host)
    body = st.session.get(f"{st.url}/v2.1/servers/{uuid}").json()["server"]
    assert body["OS-EXT-SRV-ATTR:host"] == host
    return {"id": uuid, "host": host, "address": body["addresses"]["private"][0]["addr"]}


@pytest.fixture(scope="module")
def guests(cloud):
    return {host: _boot(cloud, f"vm-{host}", host) for host in HOSTS}


def test_hosts_report_their_own_addresses(cloud):
    body = cloud.session.get(f"{cloud.url}/v2.1/os-hypervisors/detail").json()["hypervisors"]
    assert {h["service"]["host"]: h["host_ip"] for h in body} == HOSTS


def test_console_token_and_proxy_reach_the_guests_host(cloud, guests):
    stand_ins = {host: VncStandIn(address, cloud.console_port) for host, address in HOSTS.items()}
    try:
        for host, guest in guests.items():
            r = cloud.session.post(f"{cloud.url}/v2.1/servers/{guest['id']}/remote-consoles",
                                   json={"remote_console": {"protocol": "vnc", "type": "novnc"}})
            assert r.status_code == 200, r.text
            token = token_of(r.json()["remote_console"]["url"])
            stored = cloud.scalar_sql("SELECT host || ':' || port FROM console_auth_tokens WHERE instance_uuid = "
                                      ":u ORDER BY id DESC", u=guest["id"])
            assert stored == f"{HOSTS[host]}:{cloud.console_port}"
            ws = connect(cloud.novnc_port, token)
            try:
                assert ws.recv() == stand_ins[host].banner
            finally:
                ws.close()
            assert (f"instance={guest['id']} client=127.0.0.1 result=accepted "
                    f"target={HOSTS[host]}:{cloud.console_port}") in cloud.log("novncproxy")
        assert [s.accepted for s in stand_ins.values()] == [1, 1]
        # SPICE tokens take the same address from the guest's host.
        b = guests["host-b"]["id"]
        r = cloud.session.post(f"{cloud.url}/v2.1/servers/{b}/remote-consoles",
                               json={"remote_console": {"protocol": "spice", "type": "spice-html5"}})
        assert r.status_code == 200, r.text
        assert cloud.scalar_sql("SELECT host FROM console_auth_tokens WHERE instance_uuid = :u AND console_type = "
                                "'spice-html5'", u=b) == HOSTS["host-b"]
    finally:
        for s in stand_ins.values():
            s.sock.close()


def test_console_output_and_diagnostics_go_to_the_guests_host(cloud, guests):
    for guest in guests.values():
        r = cloud.session.post(f"{cloud.url}/v2.1/servers/{guest['id']}/action",
                               json={"os-getConsoleOutput": {"length": 5}})
        assert r.status_code == 200 and r.json()["output"], r.text
        r = cloud.session.get(f"{cloud.url}/v2.1/servers/{guest['id']}/diagnostics")
        assert r.status_code == 200, r.text


def _get(address: str, port: int, source: str | None = None, headers: dict | None = None,
         path: str = "/openstack/latest/meta_data.json") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(address, port, timeout=10, source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _via_proxy(cloud, host: str, source: str, headers: dict | None = None) -> tuple[int, bytes]:
    """A guest's request from ``source`` through ``host``'s metadata proxy."""
    return _get(HOSTS[host], cloud.proxy_port, source, headers)


def _direct(cloud, headers: dict | None = None, source: str | None = None) -> int:
    """A request to the central metadata service itself."""
    return _get("127.0.0.1", cloud.md_port, source, headers)[0]


def test_metadata_through_each_hosts_proxy(cloud, guests):
    for host, guest in guests.items():
        status, body = _via_proxy(cloud, host, guest["address"])
        assert status == 200, body
        assert json.loads(body)["uuid"] == guest["id"]
    # Headers a guest sends are not passed on: it still reads its own metadata, not the one it names.
    a, b = guests["host-a"], guests["host-b"]
    status, body = _via_proxy(cloud, "host-a", a["address"], headers={
        "X-Instance-ID": b["id"], "X-Instance-ID-Signature": "0" * 64, "X-Stratus-Host": "host-b",
        "X-Forwarded-For": b["address"]})
    assert status == 200 and json.loads(body)["uuid"] == a["id"]
    assert _via_proxy(cloud, "host-a", "127.79.0.250")[0] == 404  # no instance's address


def test_cross_host_spoofing_is_refused(cloud, guests):
    a, b = guests["host-a"], guests["host-b"]
    # A guest on host A using the address of B's guest: host A's proxy relays it, the service refuses it.
    status, body = _via_proxy(cloud, "host-a", b["address"])
    assert status == 404 and b["id"].encode() not in body
    assert (f"host host-a relayed a request from {b['address']}, the address of instance {b['id']} on host "
            f"host-b: refused") in cloud.log("metadata")
    # Host A's key speaks only for host A: naming host B with it is a bad signature.
    key_a = host_key(SECRET, "host-a")
    assert _direct(cloud, {"X-Stratus-Host": "host-b", "X-Forwarded-For": b["address"],
                           "X-Stratus-Host-Signature": host_signature(key_a, "host-b", b["address"])}) == 403
    assert _direct(cloud, {"X-Stratus-Host": "host-a", "X-Forwarded-For": b["address"],
                           "X-Stratus-Host-Signature": host_signature(key_a, "host-a", b["address"])}) == 404
    # The signature binds the address: host A's signature for A's guest does not carry over to B's address.
    assert _direct(cloud, {"X-Stratus-Host": "host-a", "X-Forwarded-For": b["address"],
                           "X-Stratus-Host-Signature": host_signature(key_a, "host-a", a["address"])}) == 403
    assert _direct(cloud, {"X-Stratus-Host": "host-a", "X-Forwarded-For": a["address"],
                           "X-Stratus-Host-Signature": host_signature(key_a, "host-a", a["address"])}) == 200


def test_direct_requests_only_for_the_hosts_allowed(cloud, guests):
    """metadata_direct_hosts = host-a: its guest may reach the service directly (the controller's own compute);
    host-b's guests come through host-b's proxy, so a direct request from B's address is refused."""
    assert _direct(cloud, source=guests["host-a"]["address"]) == 200
    assert _direct(cloud, source=guests["host-b"]["address"]) == 404
    assert "whose guests come through its proxy: refused" in cloud.log("metadata")
