"""Metadata service, instance networking and the config drive against real Stratus processes (fake driver).

The stack's network is 127.77.0.0/24, so instance addresses are loopback addresses: a request whose source
address is bound to an instance's fixed IP reaches the metadata process (Procfile line ``metadata``) exactly as a
guest's request arrives through the bridge's DNAT. Signed proxy headers use the stack's shared secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import subprocess
import time

import pytest
import requests

from core.metadata_docs import EC2_VERSIONS, OPENSTACK_VERSIONS
from harness.stack import Stack, metadata_stack

pytestmark = pytest.mark.services

SECRET = "metadata-proxy-secret-for-tests"
CIDR = "127.77.0.0/24"
USER_DATA = b"#!/bin/sh\necho hello from user data\n\x00\xffbinary tail\n"
NOT_INSTANCE = "127.77.0.250"  # inside the network, never allocated in this module (fewer than 240 servers)


def _signature(instance_id: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {"STRATUS_METADATA_PROXY_SHARED_SECRET": SECRET, "STRATUS_METADATA_CACHE_TTL": "2"}
    with metadata_stack(tmp_path_factory.mktemp("metadata-stack"), CIDR, env) as st:
        yield st


class Api:
    def __init__(self, stack: Stack):
        self.url = f"{stack.url}/v2.1"
        self.headers = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.79"}

    def req(self, method: str, path: str, version: str | None = None, **kw) -> requests.Response:
        headers = dict(self.headers)
        if version:
            headers["OpenStack-API-Version"] = f"compute {version}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)

    def wait(self, server_id: str, status: str = "ACTIVE", timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.req("GET", f"/servers/{server_id}").json()["server"]
            if body["status"] == status:
                return body
            assert body["status"] != "ERROR" and time.monotonic() < deadline, body
            time.sleep(0.1)


@pytest.fixture(scope="module")
def api(stack):
    return Api(stack)


@pytest.fixture(scope="module")
def world(stack, api, tmp_path_factory):
    """Two servers with key, user data, metadata; one with a config drive; one without a network."""
    headers = {"X-Auth-Token": api.headers["X-Auth-Token"]}
    r = requests.post(f"{stack.url}/image/v2/images", headers=headers, timeout=30, json={
        "name": "md-image", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image = r.json()
    r = requests.put(f"{stack.url}/image/v2/images/{image['id']}/file", data=b"\0" * 1024, timeout=30,
                     headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    public_key = open(_pubkey(tmp_path_factory)).read().strip()
    r = api.req("POST", "/os-keypairs", version="2.1", json={"keypair": {"name": "md-key", "public_key": public_key}})
    assert r.status_code == 200, r.text
    key = r.json()["keypair"]

    def boot(name: str, **extra) -> dict:
        body = {"server": {"name": name, "imageRef": image["id"], "flavorRef": "42", "networks": "auto", **extra}}
        r = api.req("POST", "/servers", json=body)
        assert r.status_code == 202, r.text
        return api.wait(r.json()["server"]["id"])

    a = boot("md-a", key_name="md-key", user_data=base64.b64encode(USER_DATA).decode(), config_drive=True,
             metadata={"role": "a"})
    b = boot("md-b", metadata={"role": "b"})
    c = boot("md-c", networks="none")
    return {"image": image, "key": key, "public_key": public_key, "a": a, "b": b, "c": c}


def _pubkey(factory) -> str:
    path = factory.mktemp("key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return str(path) + ".pub"


def fixed_ip(server: dict) -> str:
    return server["addresses"]["private"][0]["addr"]


def md(stack, path: str, source: str | None = None, method: str = "GET", headers: dict | None = None,
       body: bytes | None = None) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.md_port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type", "")
    finally:
        conn.close()


def md_ok(stack, path: str, source: str, **kw) -> bytes:
    status, data, _ = md(stack, path, source, **kw)
    assert status == 200, (path, status, data[:300])
    return data


# --- networking -------------------------------------------------------------------------------------------------

def test_addresses_and_networks(stack, api, world):
    a, b, c = world["a"], world["b"], world["c"]
    for server in (a, b):
        (entry,) = server["addresses"]["private"]
        assert entry["version"] == 4 and entry["OS-EXT-IPS:type"] == "fixed"
        assert entry["addr"].startswith("127.77.0.") and entry["addr"] != "127.77.0.1"
        assert entry["OS-EXT-IPS-MAC:mac_addr"].startswith("fa:16:3e:")
    assert fixed_ip(a) != fixed_ip(b)
    assert c["addresses"] == {}
    listed = {s["id"]: s for s in api.req("GET", "/servers/detail").json()["servers"]}
    assert listed[a["id"]]["addresses"] == a["addresses"] and listed[c["id"]]["addresses"] == {}

    nets = api.req("GET", "/os-networks", version="2.1")
    assert nets.status_code == 200, nets.text
    (net,) = nets.json()["networks"]
    assert net["label"] == "private" and net["cidr"] == CIDR and net["gateway"] == "127.77.0.1"
    assert net["netmask"] == "255.255.255.0" and net["bridge"] == "stratusbr0"  # admin view
    shown = api.req("GET", f"/os-networks/{net['id']}", version="2.1")
    assert shown.status_code == 200 and shown.json()["network"]["id"] == net["id"]
    assert api.req("GET", "/os-networks/9d6d6a28-8a8d-4a0c-9d5e-000000000000", version="2.1").status_code == 404
    assert api.req("GET", "/os-networks", version="2.36").status_code == 404

    # The CLI's --nic net-id= resolves through the Networking API (/networking) and sends [{"uuid": ...}].
    stack.openstack("server", "create", "--image", "md-image", "--flavor", "m1.nano", "--nic", f"net-id={net['id']}",
                    "md-nic")
    server = stack.wait_server("md-nic", "ACTIVE")
    assert "127.77.0." in str(server["addresses"]), server["addresses"]
    assert api.req("DELETE", f"/servers/{server['id']}").status_code == 204

    bad = api.req("POST", "/servers", json={"server": {"name": "x", "imageRef": world["image"]["id"],
                                                       "flavorRef": "42", "networks": [
                                                           {"uuid": "9d6d6a28-8a8d-4a0c-9d5e-000000000000"}]}})
    assert bad.status_code == 400 and "could not be found" in bad.text


def test_address_released_on_delete_and_reused(stack, api, world):
    r = api.req("POST", "/servers", json={"server": {"name": "md-tmp", "imageRef": world["image"]["id"],
                                                     "flavorRef": "42", "networks": "auto"}})
    tmp = api.wait(r.json()["server"]["id"])
    address = fixed_ip(tmp)
    assert md(stack, "/openstack/latest/meta_data.json", address)[0] == 200
    assert md(stack, "/openstack/latest/password", address, method="POST", body=b"tmp-pw")[0] == 200
    assert api.req("DELETE", f"/servers/{tmp['id']}").status_code == 204
    deadline = time.monotonic() + 20
    while api.req("GET", f"/servers/{tmp['id']}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # A deleted instance's address serves nothing (not even from the cache), and goes back to the pool; the
    # password its guest posted goes with it.
    assert md(stack, "/openstack/latest/meta_data.json", address)[0] == 404
    assert stack.scalar_sql("SELECT count(*) FROM instance_passwords WHERE instance_uuid = :uuid",
                            uuid=tmp["id"]) == 0
    r = api.req("POST", "/servers", json={"server": {"name": "md-tmp2", "imageRef": world["image"]["id"],
                                                     "flavorRef": "42", "networks": "auto"}})
    again = api.wait(r.json()["server"]["id"])
    # Allocation takes the lowest free address; the released one is free again, so the new one is not above it
    # (it may be lower when another test's delete freed a lower address meanwhile).
    assert ipaddress.ip_address(fixed_ip(again)) <= ipaddress.ip_address(address)
    status, data, _ = md(stack, "/openstack/latest/meta_data.json", fixed_ip(again))
    assert status == 200 and json.loads(data)["uuid"] == again["id"]
    api.req("DELETE", f"/servers/{again['id']}")


# --- the OpenStack tree ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [*OPENSTACK_VERSIONS, "latest"])
def test_openstack_tree(stack, world, version):
    a = world["a"]
    src = fixed_ip(a)
    listing = md_ok(stack, f"/openstack/{version}/", src).decode().split("\n")
    assert md_ok(stack, f"/openstack/{version}", src).decode().split("\n") == listing
    newer = lambda v: version == "latest" or version >= v  # noqa: E731
    expected = {"meta_data.json", "user_data"}
    if newer("2013-04-04"):
        expected.add("password")
    if newer("2013-10-17"):
        expected.add("vendor_data.json")
    if newer("2015-10-15"):
        expected.add("network_data.json")
    if newer("2016-10-06"):
        expected.add("vendor_data2.json")
    assert set(listing) == expected

    status, data, ctype = md(stack, f"/openstack/{version}/meta_data.json", src)
    assert status == 200 and ctype.startswith("application/json")
    meta = json.loads(data)
    assert meta["uuid"] == a["id"] and meta["name"] == "md-a" and meta["hostname"] == "md-a"
    assert meta["availability_zone"] == "nova" and meta["launch_index"] == 0 and meta["meta"] == {"role": "a"}
    assert meta["public_keys"] == {"md-key": world["public_key"]}
    assert meta["keys"] == [{"name": "md-key", "type": "ssh", "data": world["public_key"]}]
    assert ("project_id" in meta) == newer("2015-10-15")
    if "project_id" in meta:
        assert meta["project_id"] == a["tenant_id"]
    assert ("devices" in meta) == newer("2016-06-30")
    assert ("random_seed" in meta) == newer("2013-04-04")

    assert md_ok(stack, f"/openstack/{version}/user_data", src) == USER_DATA
    if newer("2013-10-17"):
        assert json.loads(md_ok(stack, f"/openstack/{version}/vendor_data.json", src)) == {}
    else:
        assert md(stack, f"/openstack/{version}/vendor_data.json", src)[0] == 404
    if newer("2015-10-15"):
        net = json.loads(md_ok(stack, f"/openstack/{version}/network_data.json", src))
        (link,) = net["links"]
        assert link["ethernet_mac_address"] == a["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"]
        (n,) = net["networks"]
        assert n["ip_address"] == src and n["netmask"] == "255.255.255.0" and n["link"] == link["id"]
        assert n["routes"][0]["gateway"] == "127.77.0.1"
    else:
        assert md(stack, f"/openstack/{version}/network_data.json", src)[0] == 404
    if newer("2016-10-06"):
        assert json.loads(md_ok(stack, f"/openstack/{version}/vendor_data2.json", src)) == {}
    else:
        assert md(stack, f"/openstack/{version}/vendor_data2.json", src)[0] == 404


def test_openstack_root_and_no_user_data(stack, world):
    src_b = fixed_ip(world["b"])
    assert md_ok(stack, "/openstack", src_b).decode().split("\n") == [*OPENSTACK_VERSIONS, "latest"]
    assert md_ok(stack, "/openstack/", src_b).decode().split("\n") == [*OPENSTACK_VERSIONS, "latest"]
    assert "user_data" not in md_ok(stack, "/openstack/latest/", src_b).decode().split("\n")
    assert md(stack, "/openstack/latest/user_data", src_b)[0] == 404
    assert md(stack, "/latest/user-data", src_b)[0] == 404
    meta = json.loads(md_ok(stack, "/openstack/latest/meta_data.json", src_b))
    assert meta["public_keys"] == {} and meta["keys"] == [] and meta["meta"] == {"role": "b"}


def test_password_post_once(stack, api, world):
    src = fixed_ip(world["b"])
    assert md_ok(stack, "/openstack/latest/password", src) == b""
    assert md(stack, "/openstack/latest/password", src, method="POST", body=b"x" * 257)[0] == 400
    assert md(stack, "/openstack/2012-08-10/password", src, method="POST", body=b"pw")[0] == 405
    assert md(stack, "/openstack/latest/password", src, method="POST", body=b"encrypted-pw")[0] == 200
    assert md_ok(stack, "/openstack/latest/password", src) == b"encrypted-pw"
    assert md_ok(stack, "/openstack/2013-04-04/password", src) == b"encrypted-pw"
    status, body, _ = md(stack, "/openstack/latest/password", src, method="POST", body=b"another")
    assert status == 409, body
    assert md_ok(stack, "/openstack/latest/password", src) == b"encrypted-pw"
    # Another instance's password is its own.
    assert md_ok(stack, "/openstack/latest/password", fixed_ip(world["a"])) == b""
    # The compute API's os-server-password shows what the guest posted; clearing it lets the guest post a new one.
    url = f"/servers/{world['b']['id']}/os-server-password"
    assert api.req("GET", url).json() == {"password": "encrypted-pw"}
    assert api.req("GET", f"/servers/{world['a']['id']}/os-server-password").json() == {"password": ""}
    assert api.req("DELETE", url).status_code == 204
    assert md_ok(stack, "/openstack/latest/password", src) == b""
    assert md(stack, "/openstack/latest/password", src, method="POST", body=b"second-pw")[0] == 200
    assert api.req("GET", url).json() == {"password": "second-pw"}


# --- the EC2 tree ---------------------------------------------------------------------------------------------------

def test_ec2_root(stack, world):
    src = fixed_ip(world["a"])
    assert md_ok(stack, "/", src).decode().split("\n") == [*EC2_VERSIONS, "latest"]
    assert md_ok(stack, "/latest", src).decode().split("\n") == ["meta-data/", "user-data"]
    assert md_ok(stack, "/latest/", src).decode().split("\n") == ["meta-data/", "user-data"]
    assert md_ok(stack, "/latest/", fixed_ip(world["b"])).decode().split("\n") == ["meta-data/"]


@pytest.mark.parametrize("version", [*EC2_VERSIONS, "latest"])
def test_ec2_tree(stack, api, world, version):
    a = world["a"]
    src = fixed_ip(a)
    newer = lambda v: version == "latest" or version >= v  # noqa: E731
    instance_name = api.req("GET", f"/servers/{a['id']}").json()["server"]["OS-EXT-SRV-ATTR:instance_name"]
    ec2_id = "i-" + instance_name.split("-")[1]
    listing = md_ok(stack, f"/{version}/meta-data/", src).decode().split("\n")
    for key in ("ami-id", "ami-launch-index", "ami-manifest-path", "hostname", "instance-id", "local-ipv4",
                "public-keys/", "reservation-id", "security-groups"):
        assert key in listing, (key, listing)
    assert ("placement/" in listing) == newer("2008-02-01")
    assert ("instance-type" in listing) == newer("2007-08-29")
    assert ("local-hostname" in listing) == newer("2007-01-19")
    assert ("block-device-mapping/" in listing) == newer("2007-12-15")
    get = lambda p: md_ok(stack, f"/{version}/meta-data/{p}", src).decode()  # noqa: E731
    assert get("instance-id") == ec2_id
    assert get("local-ipv4") == src
    assert get("hostname") == "md-a"
    assert get("ami-launch-index") == "0"
    assert get("ami-id").startswith("ami-") and len(get("ami-id")) == 12
    assert get("security-groups") == "default"
    assert get("public-keys/") == "0=md-key"
    assert get("public-keys/0/") == "openssh-key"
    assert get("public-keys/0/openssh-key") == world["public_key"]
    if newer("2008-02-01"):
        assert get("placement/") == "availability-zone"
        assert get("placement/availability-zone") == "nova"
    else:
        assert md(stack, f"/{version}/meta-data/placement/availability-zone", src)[0] == 404
    if newer("2007-08-29"):
        assert get("instance-type") == "m1.nano"
    assert md_ok(stack, f"/{version}/user-data", src) == USER_DATA


# --- identification -----------------------------------------------------------------------------------------------

def test_each_instance_sees_only_its_own(stack, world):
    for name in ("a", "b"):
        server = world[name]
        meta = json.loads(md_ok(stack, "/openstack/latest/meta_data.json", fixed_ip(server)))
        assert meta["uuid"] == server["id"] and meta["meta"] == {"role": name}
    other = world["b"]
    # Guest b naming a (unsigned, or signed with a wrong key) is refused, never served a's data.
    for headers in ({"X-Instance-ID": world["a"]["id"]},
                    {"X-Instance-ID": world["a"]["id"], "X-Tenant-ID": world["a"]["tenant_id"],
                     "X-Instance-ID-Signature": _signature(world["a"]["id"], "guessed-secret")},
                    {"X-Instance-ID": world["a"]["id"], "X-Instance-ID-Signature": "0" * 64},
                    {"X-Instance-ID-Signature": _signature(world["a"]["id"])}):
        status, body, _ = md(stack, "/openstack/latest/meta_data.json", fixed_ip(other), headers=headers)
        assert status == 403, (headers, status, body)
        assert world["a"]["id"].encode() not in body


def test_unknown_source_is_404(stack, world):
    for source in (None, NOT_INSTANCE, "127.0.0.1"):
        status, body, _ = md(stack, "/openstack/latest/meta_data.json", source)
        assert status == 404 and b"uuid" not in body
        assert md(stack, "/latest/meta-data/instance-id", source)[0] == 404
    # An instance with networks "none" has no address: nothing answers for it by address.


def test_signed_proxy_headers(stack, world):
    a, b = world["a"], world["b"]
    headers = {"X-Instance-ID": a["id"], "X-Tenant-ID": a["tenant_id"], "X-Instance-ID-Signature": _signature(a["id"])}
    # From an address that is no instance's (the proxy's), the signed headers identify the instance.
    meta = json.loads(md_ok(stack, "/openstack/latest/meta_data.json", "127.0.0.1", headers=headers))
    assert meta["uuid"] == a["id"]
    # The signature wins over the source address.
    meta = json.loads(md_ok(stack, "/openstack/latest/meta_data.json", fixed_ip(b), headers=headers))
    assert meta["uuid"] == a["id"]
    assert md_ok(stack, "/latest/meta-data/local-ipv4", "127.0.0.1", headers=headers).decode() == fixed_ip(a)
    # Wrong tenant: 404 (Nova); signature of another instance id: 403.
    wrong_tenant = {**headers, "X-Tenant-ID": "someone-else"}
    assert md(stack, "/openstack/latest/meta_data.json", "127.0.0.1", headers=wrong_tenant)[0] == 404
    swapped = {**headers, "X-Instance-ID": b["id"]}
    assert md(stack, "/openstack/latest/meta_data.json", "127.0.0.1", headers=swapped)[0] == 403
    # A signed id of no live instance: 404.
    ghost = "00000000-0000-4000-8000-000000000000"
    assert md(stack, "/", "127.0.0.1", headers={"X-Instance-ID": ghost,
                                                "X-Instance-ID-Signature": _signature(ghost)})[0] == 404
    # The instance without a network is reachable through a proxy only.
    c = world["c"]
    meta = json.loads(md_ok(stack, "/openstack/latest/meta_data.json", "127.0.0.1", headers={
        "X-Instance-ID": c["id"], "X-Instance-ID-Signature": _signature(c["id"])}))
    assert meta["uuid"] == c["id"]
    net = json.loads(md_ok(stack, "/openstack/latest/network_data.json", "127.0.0.1", headers={
        "X-Instance-ID": c["id"], "X-Instance-ID-Signature": _signature(c["id"])}))
    assert net == {"links": [], "networks": [], "services": []}


@pytest.mark.parametrize("path", [
    "/openstack/1999-01-01/meta_data.json", "/openstack/latest/nope", "/openstack/latest/meta_data.json/x",
    "/openstack/2012-08-10/password", "/openstack/2012-08-10/network_data.json",
    "/2006-01-01/meta-data/", "/latest/meta-data/nope", "/latest/meta-data/instance-id/x",
    "/latest/meta-data/public-keys/9/openssh-key", "/latest/meta-data/public-keys/0/nope",
    "/latest/meta-data/placement/nope", "/latest/nope", "/nope", "/openstack/latest/../../etc/passwd",
    "/latest/meta-data/%00", "/" + "x" * 4000, "/latest/meta-data/..%2f..%2f",
])
def test_bad_paths_404(stack, world, path):
    status, body, _ = md(stack, path, fixed_ip(world["a"]))
    assert status == 404, (path, status, body[:200])


def test_other_methods(stack, world):
    src = fixed_ip(world["a"])
    assert md(stack, "/openstack/latest/meta_data.json", src, method="POST", body=b"x")[0] == 405
    assert md(stack, "/openstack/latest/meta_data.json", src, method="DELETE")[0] == 405
    assert md(stack, "/openstack/latest/meta_data.json", src, method="HEAD")[0] == 200
    assert "Traceback" not in stack.log("metadata")


def test_user_data_64k(stack, api, world):
    raw = bytes(range(256)) * 191  # 48896 bytes -> 65196 base64 characters (the API allows 65535)
    r = api.req("POST", "/servers", json={"server": {"name": "md-big", "imageRef": world["image"]["id"],
                                                     "flavorRef": "42", "networks": "auto",
                                                     "user_data": base64.b64encode(raw).decode()}})
    assert r.status_code == 202, r.text
    big = api.wait(r.json()["server"]["id"])
    assert md_ok(stack, "/openstack/latest/user_data", fixed_ip(big)) == raw
    assert md_ok(stack, "/latest/user-data", fixed_ip(big)) == raw
    api.req("DELETE", f"/servers/{big['id']}")


# --- config drive -----------------------------------------------------------------------------------------------

def test_config_drive_recorded_by_fake_driver(stack, api, world):
    a, b = world["a"], world["b"]
    assert a["config_drive"] == "True" and b["config_drive"] == ""
    out = api.req("POST", f"/servers/{a['id']}/action", json={"os-getConsoleOutput": {}}).json()["output"]
    line = next(x for x in out.splitlines() if x.startswith("fake config drive config-2:"))
    files = set(line.split(":", 1)[1].split())
    for version in [*OPENSTACK_VERSIONS, "latest"]:
        assert f"openstack/{version}/meta_data.json" in files and f"openstack/{version}/user_data" in files
    for version in [*EC2_VERSIONS, "latest"]:
        assert f"ec2/{version}/meta-data.json" in files and f"ec2/{version}/user-data" in files
    assert {"openstack/latest/network_data.json", "openstack/latest/vendor_data.json",
            "openstack/latest/vendor_data2.json"} <= files
    assert f"ip={fixed_ip(a)}" in out
    out_b = api.req("POST", f"/servers/{b['id']}/action", json={"os-getConsoleOutput": {}}).json()["output"]
    assert "config drive" not in out_b
