"""Issue 5 acceptance: real QEMU guests, booted by Stratus through the ``openstack`` CLI, read their own metadata
over HTTP at 169.254.169.254 and from a config drive, and print it on the serial console.

The network comes from ``tools/stratus-network up`` (a bridge with no uplink, the gateway on it and the DNAT of
169.254.169.254:80 to the metadata process), on its own bridge and CIDR so it cannot meet another suite's guests,
and goes away at the end (``down``). Guests get their address from the kernel command line (stratus.ip=...), which
the test image's /init applies before it fetches (tools/build-test-image).
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.libvirt_support import domains as _domains, libvirt_stack, metadata_sections, require_test_image
from harness.stack import REPO, Stack, free_port

pytestmark = pytest.mark.libvirt

HOST = "kvm-md"
BRIDGE = "stratusmd0"
CIDR = "10.77.7.0/24"
GATEWAY = "10.77.7.1"
SECRET = "guest-suite-proxy-secret"
GUEST_TIMEOUT = 150  # TCG guests on two cores under CI load: boot, network, fetch


@pytest.fixture(scope="module")
def test_image() -> Path:
    return require_test_image(("iptables", "genisoimage"), "iptables iproute2 genisoimage", "METADATA GUEST TESTS")


def _network_tool(action: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "tools" / "stratus-network"), action], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


@pytest.fixture(scope="module")
def network(test_image):
    env = {"STRATUS_NETWORK_BRIDGE": BRIDGE, "STRATUS_NETWORK_CIDR": CIDR, "STRATUS_METADATA_PORT": str(free_port())}
    _network_tool("down", env)  # leftovers of an interrupted run
    up = _network_tool("up", env)
    assert up.returncode == 0, up.stderr
    try:
        yield env
    finally:
        down = _network_tool("down", env)
        assert down.returncode == 0, down.stderr
        assert not Path(f"/sys/class/net/{BRIDGE}").exists()
        rules = subprocess.run(["bash", "-c", "iptables -w -S; iptables -w -t nat -S"], capture_output=True,
                               text=True).stdout
        assert BRIDGE not in rules, rules


@pytest.fixture(scope="module")
def stack(network):
    port = network["STRATUS_METADATA_PORT"]
    env = {"STRATUS_NETWORK_BRIDGE": BRIDGE, "STRATUS_NETWORK_CIDR": CIDR,
           "STRATUS_METADATA_BIND": f"{GATEWAY}:{port}", "STRATUS_METADATA_PROXY_SHARED_SECRET": SECRET}
    with libvirt_stack("metadata-guest", HOST, extra_env=env,
                       processes=("api", "conductor", "scheduler", "compute", "metadata")) as st:
        st.md_port = int(port)
        yield st


class Api:
    def __init__(self, stack: Stack):
        self.base = stack.url
        self.url = f"{stack.url}/v2.1"
        self.headers = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.79"}

    def req(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", headers=self.headers, timeout=60, **kw)

    def upload(self, name: str, path: Path, disk_format: str, container_format: str, **props) -> str:
        h = {"X-Auth-Token": self.headers["X-Auth-Token"]}
        r = requests.post(f"{self.base}/image/v2/images", headers=h, timeout=30, json={
            "name": name, "disk_format": disk_format, "container_format": container_format, **props})
        assert r.status_code == 201, r.text
        image_id = r.json()["id"]
        with open(path, "rb") as fh:
            r = requests.put(f"{self.base}/image/v2/images/{image_id}/file", data=fh, timeout=120,
                             headers={**h, "Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        return image_id

    def console(self, uuid: str) -> str:
        r = self.req("POST", f"/servers/{uuid}/action", json={"os-getConsoleOutput": {}})
        return r.json().get("output", "") if r.ok else ""


@pytest.fixture(scope="module")
def api(stack) -> Api:
    return Api(stack)


@pytest.fixture(scope="module")
def guests(stack, api, test_image, tmp_path_factory):
    """Two guests booted at once through the CLI: A with a config drive, B without; both with key + user data."""
    kernel = api.upload("md-kernel", test_image / "vmlinuz", "aki", "aki")
    ramdisk = api.upload("md-ramdisk", test_image / "initrd.img", "ari", "ari")
    cmdline = (test_image / "cmdline").read_text().strip()
    api.upload("md-disk", test_image / "disk.qcow2", "qcow2", "bare", kernel_id=kernel, ramdisk_id=ramdisk,
               os_command_line=cmdline)
    r = api.req("POST", "/flavors", json={"flavor": {"name": "md.tiny", "ram": 128, "vcpus": 1, "disk": 1}})
    assert r.status_code == 200, r.text
    tmp = tmp_path_factory.mktemp("guest-files")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "md-guest-key", "-f", str(tmp / "id")],
                   check=True)
    public_key = (tmp / "id.pub").read_text().strip()
    r = api.req("POST", "/os-keypairs", json={"keypair": {"name": "md-key", "public_key": public_key}})
    assert r.status_code in (200, 201), r.text
    networks = requests.get(f"{api.url}/os-networks", timeout=30,
                            headers={**api.headers, "OpenStack-API-Version": "compute 2.1"}).json()["networks"]
    net_id = next(n["id"] for n in networks if n["label"] == "private")

    specs = {"md-guest-a": ["--config-drive", "true"], "md-guest-b": []}
    procs = {}
    for name, extra in specs.items():
        user_data = tmp / f"{name}.txt"
        user_data.write_text(f"#!/bin/sh\necho user data of {name}\n")
        procs[name] = subprocess.Popen(
            [str(Path(stack.env["PATH"].split(":")[0]) / "openstack"), "server", "create", "--image", "md-disk",
             "--flavor", "md.tiny", "--key-name", "md-key", "--user-data", str(user_data), "--nic",
             f"net-id={net_id}", *extra, "--wait", "-f", "json", name],
            env=stack.os_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    servers = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"server create {name} failed:\n{err}\n{out}"
        servers[name] = json.loads(out)
        servers[name]["user_data"] = (tmp / f"{name}.txt").read_text()
    return {"servers": servers, "public_key": public_key, "net_id": net_id}


def _wait_console(api: Api, uuid: str, needles: list[str]) -> str:
    deadline = time.monotonic() + GUEST_TIMEOUT
    while True:
        out = api.console(uuid)
        if all(n in out for n in needles):
            return out
        if time.monotonic() > deadline:
            pytest.fail(f"guest {uuid} did not print {needles} in {GUEST_TIMEOUT}s; console:\n{out[-4000:]}")
        time.sleep(2)


def _check(server: dict, sections: dict, source: str, public_key: str, ec2_id: str) -> None:
    meta = json.loads(sections[(source, "meta_data.json")])
    assert meta["uuid"] == server["id"] and meta["name"] == server["name"]
    assert meta["hostname"] == server["name"]
    assert meta["project_id"] == server["project_id"]
    assert meta["public_keys"] == {"md-key": public_key}
    assert meta["keys"][0]["data"] == public_key
    assert sections[(source, "user_data")] == server["user_data"].rstrip("\n")


def test_guests_read_their_own_metadata(stack, api, guests):
    servers = guests["servers"]
    a, b = servers["md-guest-a"], servers["md-guest-b"]
    for server in (a, b):
        assert server["status"] == "ACTIVE"
        assert "10.77.7." in str(server["addresses"]), server["addresses"]
    logs = {}
    for name, server in servers.items():
        needles = ["STRATUS-MD-DONE http"] + (["STRATUS-MD-DONE configdrive"] if name == "md-guest-a" else [])
        _wait_console(api, server["id"], needles)
        # The acceptance reads the values back through the CLI.
        logs[name] = stack.openstack("console", "log", "show", server["id"]).stdout
    for name, server in servers.items():
        log = logs[name]
        assert "STRATUS-MD-DONE http ok" in log, log[-3000:]
        assert "STRATUS-NET source=cmdline" in log
        sections = metadata_sections(log)
        shown = api.req("GET", f"/servers/{server['id']}").json()["server"]
        ec2_id = "i-" + shown["OS-EXT-SRV-ATTR:instance_name"].split("-", 1)[1]
        _check(server, sections, "http", guests["public_key"], ec2_id)
        assert sections[("http", "instance-id")] == ec2_id
        addr = shown["addresses"]["private"][0]["addr"]
        assert f"addr={addr}/24" in log
        # Each guest saw only its own identity.
        other = b if server is a else a
        assert other["id"] not in log
    log_a = logs["md-guest-a"]
    assert "STRATUS-MD-DONE configdrive ok" in log_a, log_a[-3000:]
    sections = metadata_sections(log_a)
    shown = api.req("GET", f"/servers/{a['id']}").json()["server"]
    ec2_id = "i-" + shown["OS-EXT-SRV-ATTR:instance_name"].split("-", 1)[1]
    _check(a, sections, "configdrive", guests["public_key"], ec2_id)
    assert json.loads(sections[("configdrive", "ec2-meta-data.json")])["instance-id"] == ec2_id
    assert "STRATUS-MD-DONE configdrive" not in logs["md-guest-b"]


def _md(stack, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(GATEWAY, stack.md_port, timeout=10)  # source: the gateway, no instance's
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_non_instance_and_forged_requests_refused(stack, guests):
    a = guests["servers"]["md-guest-a"]
    status, body = _md(stack, "/openstack/latest/meta_data.json")
    assert status == 404 and a["id"].encode() not in body
    forged = {"X-Instance-ID": a["id"], "X-Tenant-ID": a["project_id"],
              "X-Instance-ID-Signature": hmac.new(b"not-the-secret", a["id"].encode(), hashlib.sha256).hexdigest()}
    status, body = _md(stack, "/openstack/latest/meta_data.json", forged)
    assert status == 403 and a["id"].encode() not in body
    signed = {**forged, "X-Instance-ID-Signature": hmac.new(SECRET.encode(), a["id"].encode(),
                                                              hashlib.sha256).hexdigest()}
    status, body = _md(stack, "/openstack/latest/meta_data.json", signed)
    assert status == 200 and json.loads(body)["uuid"] == a["id"]


def test_delete_releases_everything(stack, api, guests):
    for server in guests["servers"].values():
        assert api.req("DELETE", f"/servers/{server['id']}").status_code == 204
    deadline = time.monotonic() + 90
    for server in guests["servers"].values():
        while api.req("GET", f"/servers/{server['id']}").status_code != 404:
            assert time.monotonic() < deadline, "server not deleted"
            time.sleep(0.5)
        assert server["id"] not in _domains()
        assert not (stack.instances / server["id"]).exists()
