"""A server booted at 2.42 with a tagged network sees that NIC in its meta_data.json ``devices`` (real processes,
fake driver): the guest asks the metadata service from its own fixed IP, as test_metadata.py does."""
from __future__ import annotations

import http.client
import json
import time

import pytest
import requests

from harness.stack import Stack, metadata_stack

pytestmark = [pytest.mark.services, pytest.mark.backends("sqlite-filesystem")]

CIDR = "127.78.0.0/24"


@pytest.fixture(scope="module")
def md_stack(tmp_path_factory):
    with metadata_stack(tmp_path_factory.mktemp("device-tags-stack"), CIDR,
                        {"STRATUS_METADATA_CACHE_TTL": "0"}) as st:
        yield st


def _guest_get(stack: Stack, path: str, source: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", stack.md_port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (path, resp.status, body[:300])
        return body
    finally:
        conn.close()


def test_tagged_nic_in_guest_device_metadata(md_stack):
    headers = {"X-Auth-Token": md_stack.admin_token()}
    api = f"{md_stack.url}/v2.1"
    image = requests.post(f"{md_stack.url}/image/v2/images", headers=headers, timeout=30, json={
        "name": "dt-image", "disk_format": "raw", "container_format": "bare"}).json()
    r = requests.put(f"{md_stack.url}/image/v2/images/{image['id']}/file", data=b"\0" * 1024, timeout=30,
                     headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    networks = requests.get(f"{api}/os-networks", headers={**headers, "OpenStack-API-Version": "compute 2.35"},
                            timeout=30).json()["networks"]
    body = {"server": {"name": "tagged", "imageRef": image["id"], "flavorRef": "42",
                       "networks": [{"uuid": networks[0]["id"], "tag": "nic1"}]}}
    v = {**headers, "OpenStack-API-Version": "compute 2.42"}
    refused = requests.post(f"{api}/servers", json=body, timeout=30,
                            headers={**headers, "OpenStack-API-Version": "compute 2.41"})
    assert refused.status_code == 400 and "'tag' was unexpected" in refused.text
    r = requests.post(f"{api}/servers", json=body, headers=v, timeout=30)
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    deadline = time.monotonic() + 30
    while True:
        server = requests.get(f"{api}/servers/{server_id}", headers=v, timeout=30).json()["server"]
        if server["status"] == "ACTIVE":
            break
        assert server["status"] != "ERROR" and time.monotonic() < deadline, server
        time.sleep(0.1)
    (address,) = [a for net in server["addresses"].values() for a in net]
    md = json.loads(_guest_get(md_stack, "/openstack/latest/meta_data.json", address["addr"]))
    assert md["devices"] == [{"type": "nic", "bus": "pci", "address": "0000:00:04.0",
                              "mac": address["OS-EXT-IPS-MAC:mac_addr"], "tags": ["nic1"], "vf_trusted": False}]
    newton = json.loads(_guest_get(md_stack, "/openstack/2016-06-30/meta_data.json", address["addr"]))
    assert newton["devices"] == [{"type": "nic", "bus": "pci", "address": "0000:00:04.0",
                                  "mac": address["OS-EXT-IPS-MAC:mac_addr"], "tags": ["nic1"]}]
    liberty = json.loads(_guest_get(md_stack, "/openstack/2015-10-15/meta_data.json", address["addr"]))
    assert "devices" not in liberty
