"""Live migration of a real QEMU guest between two libvirt hosts that share no disk (issue 25 item 4): each compute
host is a compute worker on a private libvirt daemon of its own (tools/libvirt-node: own domains, host UUID, TCP
listener) with its own instances path and state dir. os-migrateLive (block_migration "auto") to host B: B's
pre_live_migration builds the disk from the image through its own cache, A's libvirtd migrates peer-to-peer with the
overlay's blocks (NON_SHARED_INC) to B's, and the guest keeps running there without a reboot: what was written into
its memory before the move is read back through its serial console on B. One TCG guest (boots are slow)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import pytest
import requests

from harness.stack import free_port
from tests.libvirt_support import libvirt_stack, private_libvirtd, require_test_image, upload_test_image
from tests.outage_support import Client

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]
HOSTS = ("lv-live-a", "lv-live-b")
TIMEOUT = 240
UP = "STRATUS-GUEST-UP"


def _call(api: Client, method: str, path: str, body: dict | None = None, version: str = "2.96"):
    return requests.request(method, f"{api.url}{path}", json=body, timeout=60,
                            headers={**api.headers, "OpenStack-API-Version": f"compute {version}"})


def _virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)


def _wait(what: str, check, timeout: float = TIMEOUT, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def _server(api: Client, uuid: str) -> dict:
    return _call(api, "GET", f"/servers/{uuid}").json()["server"]


def _settled(api: Client, uuid: str, status: str):
    server = _server(api, uuid)
    assert server["status"] != "ERROR", server.get("fault")
    return server if server["status"] == status and not server["OS-EXT-STS:task_state"] else None


def _console(api: Client, uuid: str) -> str:
    r = _call(api, "POST", f"/servers/{uuid}/action", {"os-getConsoleOutput": {}})
    return r.json()["output"] if r.ok else ""


def _type(port: int, line: str, expect: str, timeout: float = 60) -> str:
    """Type ``line`` into the guest's shell on its serial console (a TCP listener) until ``expect`` comes back."""
    deadline = time.monotonic() + timeout
    seen = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(1)
        while expect.encode() not in seen:
            assert time.monotonic() < deadline, f"no {expect!r} on the serial console: {seen[-500:]!r}"
            s.sendall(f"\n{line}\n".encode())
            try:
                for _ in range(5):
                    seen += s.recv(4096)
            except socket.timeout:
                pass
    return seen.decode(errors="replace")


def _serial_port(uri: str, uuid: str) -> int:
    found = re.search(r"<serial type='tcp'>\s*<source mode='bind' host='[^']*' service='(\d+)'",
                      _virsh(uri, "dumpxml", uuid).stdout)
    assert found, _virsh(uri, "dumpxml", uuid).stdout
    return int(found.group(1))


@pytest.fixture(scope="module")
def cloud(request):
    image_dir = require_test_image()
    ports = {host: free_port() for host in HOSTS}
    failed = request.session.testsfailed
    with private_libvirtd("live-a", ports[HOSTS[0]]) as uri_a, private_libvirtd("live-b", ports[HOSTS[1]]) as uri_b, \
            libvirt_stack("libvirt-live", ",".join(HOSTS), processes=("api", "conductor", "scheduler"),
                          # a copy slow enough to be caught running and aborted
                          extra_env={"STRATUS_LIVE_MIGRATION_URI": "qemu+tcp://%s/system",
                                     "STRATUS_LIVE_MIGRATION_BANDWIDTH": "4"},
                          keep_logs=lambda: request.session.testsfailed != failed) as st:
        st.uris = dict(zip(HOSTS, (uri_a, uri_b)))
        st.paths = {}
        for host in HOSTS:  # a worker per host: its own daemon, instances path and state dir
            st.paths[host] = st.instances.parent / f"instances-{host}"
            st.paths[host].mkdir(mode=0o755)
            os.chmod(st.paths[host], 0o755)
            st.start_process(f"compute-{host}", "python -m tasks.compute_worker", env={
                "STRATUS_COMPUTE_HOSTS": host, "STRATUS_LIBVIRT_URI": st.uris[host],
                "STRATUS_INSTANCES_PATH": str(st.paths[host]),
                "STRATUS_STATE_DIR": str(st.instances.parent / f"node-{host}"),
                # where this host's libvirtd takes migrations (Nova's live_migration_inbound_addr)
                "STRATUS_LIVE_MIGRATION_INBOUND_ADDR": f"127.0.0.1:{ports[host]}"})
        _wait("both compute hosts", lambda: st.registered_hosts() >= len(HOSTS), timeout=90, interval=0.5)
        st.image_dir = image_dir
        yield st


def test_live_migration_between_libvirt_hosts_without_shared_disk(cloud):
    api = Client(cloud)
    (a, b), uris, paths = HOSTS, cloud.uris, cloud.paths
    image, flavor = upload_test_image(api, cloud.image_dir)
    r = requests.post(f"{api.url}/servers", headers=api.headers, timeout=60, json={"server": {
        "name": "lv-live", "imageRef": image, "flavorRef": flavor, "networks": "none",
        "availability_zone": f"nova:{a}"}})
    assert r.status_code == 202, r.text
    uuid = r.json()["server"]["id"]
    _wait("ACTIVE on A", lambda: _settled(api, uuid, "ACTIVE"))
    _wait("the guest's userspace", lambda: UP in _console(api, uuid))
    assert _virsh(uris[a], "domstate", uuid).stdout.strip() == "running"
    # something only this boot's memory holds (/tmp is the initramfs' RAM)
    _type(_serial_port(uris[a], uuid), "echo moved-$((6*7)) > /tmp/live-mark; cat /tmp/live-mark", "moved-42")

    # block_migration false: B's shared storage test file is not in A's instances path, refused before any copy
    refused = {"os-migrateLive": {"host": b, "block_migration": False}}
    assert _call(api, "POST", f"/servers/{uuid}/action", refused).status_code == 202
    _wait("the refused migration", lambda: _call(api, "GET", f"/os-migrations?instance_uuid={uuid}",
                                                 version="2.59").json()["migrations"][0]["status"] == "error")
    server = _wait("ACTIVE on A after the refusal", lambda: _settled(api, uuid, "ACTIVE"))
    assert server["OS-EXT-SRV-ATTR:host"] == a and not (paths[b] / uuid).exists()

    # aborted while it copies (2.24): abortJob; the guest runs on A as before, B's daemon and disk have nothing
    body = {"os-migrateLive": {"host": b, "block_migration": "auto"}}
    assert _call(api, "POST", f"/servers/{uuid}/action", body).status_code == 202
    mig = _wait("a running migration", lambda: [m for m in _call(api, "GET", f"/servers/{uuid}/migrations").json()[
        "migrations"] if m["status"] == "running"], interval=0.2)[0]
    assert _call(api, "DELETE", f"/servers/{uuid}/migrations/{mig['id']}").status_code == 202
    server = _wait("ACTIVE after the abort", lambda: _settled(api, uuid, "ACTIVE"), interval=1)
    assert server["OS-EXT-SRV-ATTR:host"] == a and _virsh(uris[a], "domstate", uuid).stdout.strip() == "running"
    _wait("B's rollback", lambda: not (paths[b] / uuid).exists() and _virsh(uris[b], "domstate", uuid).returncode)

    assert _call(api, "POST", f"/servers/{uuid}/action", body).status_code == 202
    server = _wait("ACTIVE after the live migration", lambda: _settled(api, uuid, "ACTIVE"), interval=2)
    migs = _call(api, "GET", f"/os-migrations?instance_uuid={uuid}", version="2.59").json()["migrations"]
    assert [(m["status"], m["source_compute"], m["dest_compute"]) for m in migs] == \
        [("completed", a, b), ("cancelled", a, b), ("error", a, b)]
    assert server["OS-EXT-SRV-ATTR:host"] == b and server["OS-EXT-STS:power_state"] == 1

    # the domain runs on B's daemon with its disk (and its base) under B's instances path, gone from A's
    assert _virsh(uris[b], "domstate", uuid).stdout.strip() == "running"
    assert _virsh(uris[a], "domstate", uuid).returncode != 0  # undefined there
    disks = _virsh(uris[b], "domblklist", uuid).stdout
    assert f"{paths[b]}/{uuid}/disk" in disks and str(paths[a]) not in disks, disks
    backing = subprocess.run(["qemu-img", "info", "-U", str(paths[b] / uuid / "disk")], capture_output=True,
                             text=True, check=True).stdout
    assert f"backing file: {paths[b]}/_base/" in backing, backing
    assert not (paths[a] / uuid).exists()

    # the same guest, not a reboot: it still holds what was written into its memory on A, and answers on B
    out = _type(_serial_port(uris[b], uuid), "cat /tmp/live-mark; echo answers-$((7*6))", "answers-42")
    assert "moved-42" in out
    on_b = _wait("B's console log", lambda: "answers-42" in _console(api, uuid) and _console(api, uuid))
    assert UP not in on_b, on_b  # no boot on B
