"""The Networking API with the unmodified openstack CLI against real Stratus processes, on every backend: the
built-in network and subnet, servers booted onto it by name (--network) and by id (--nic net-id=), their ports
(one per NIC, the server's own fixed IP and MAC, its status following the guest), what a member sees and may do,
network quotas, and security groups absent as on a Neutron cloud without the extension."""
from __future__ import annotations

import uuid

import pytest
import requests

pytestmark = pytest.mark.services


def _member(stack) -> tuple[str, str]:
    """A new project and a user with the member role on it (name = user = project): (name, password)."""
    ident, hdrs = f"{stack.url}/identity/v3", {"X-Auth-Token": stack.admin_token()}
    name = f"net-{uuid.uuid4().hex[:6]}"
    requests.post(f"{ident}/projects", json={"project": {"name": name}}, headers=hdrs, timeout=30).raise_for_status()
    requests.post(f"{ident}/users", json={"user": {"name": name, "password": "pw-" + name}}, headers=hdrs,
                  timeout=30).raise_for_status()
    stack.openstack("role", "add", "--project", name, "--user", name, "member")
    return name, "pw-" + name


def test_network_commands_and_booting_onto_the_network(stack, tmp_path):
    services = {s["Type"]: s for s in stack.openstack_json("service", "list")}
    assert services["network"]["Name"] == "neutron"

    (net,) = stack.openstack_json("network", "list")
    (subnet,) = stack.openstack_json("subnet", "list")
    assert net["Subnets"] == [subnet["ID"]] and subnet["Network"] == net["ID"]
    shown = stack.openstack_json("network", "show", net["ID"])
    assert shown["name"] == net["Name"] and shown["status"] == "ACTIVE" and shown["shared"] is True
    assert shown["router:external"] is False and shown["admin_state_up"] is True
    assert stack.openstack_json("network", "show", net["Name"])["id"] == net["ID"]
    sub = stack.openstack_json("subnet", "show", subnet["ID"])
    assert sub["cidr"] == subnet["Subnet"] and sub["ip_version"] == 4 and sub["gateway_ip"]
    assert sub["allocation_pools"] and sub["enable_dhcp"] is False
    assert stack.openstack_json("network", "list", "--external") == []

    image_file = tmp_path / "disk.img"
    image_file.write_bytes(b"\x00" * 4096)
    stack.openstack("image", "create", "--file", str(image_file), "--disk-format", "raw", "--container-format",
                    "bare", "--public", "net-image")
    # by the network's name (the CLI resolves it through the Networking API) and by its id
    by_name = stack.openstack_json("server", "create", "--image", "net-image", "--flavor", "m1.nano",
                                   "--network", net["Name"], "--wait", "net-vm1")
    by_id = stack.openstack_json("server", "create", "--image", "net-image", "--flavor", "m1.nano",
                                 "--nic", f"net-id={net['ID']}", "--wait", "net-vm2")
    assert by_name["status"] == by_id["status"] == "ACTIVE"

    (port,) = stack.openstack_json("port", "list", "--server", "net-vm1")
    address = by_name["addresses"][net["Name"]][0]
    assert port["Fixed IP Addresses"] == [{"subnet_id": subnet["ID"], "ip_address": address}]
    assert port["Status"] == "ACTIVE"
    detail = stack.openstack_json("port", "show", port["ID"])
    assert detail["device_id"] == by_name["id"] and detail["device_owner"].startswith("compute:")
    assert detail["network_id"] == net["ID"] and detail["mac_address"] == port["MAC Address"]
    assert detail["name"] == "" and detail["project_id"] == by_name["project_id"]
    assert {p["ID"] for p in stack.openstack_json("port", "list", "--network", net["ID"])} >= {port["ID"]}
    (other,) = stack.openstack_json("port", "list", "--server", by_id["id"])
    assert other["ID"] != port["ID"]
    assert [p["ID"] for p in stack.openstack_json("port", "list", "--fixed-ip", f"ip-address={address}")] == \
        [port["ID"]]

    # the port follows its server: DOWN when stopped, gone when deleted
    stack.openstack("server", "stop", "net-vm1")
    stack.wait_server("net-vm1", "SHUTOFF")
    assert stack.openstack_json("port", "show", port["ID"])["status"] == "DOWN"

    proc = stack.openstack("server", "create", "--image", "net-image", "--flavor", "m1.nano", "--nic",
                           f"net-id={uuid.uuid4()}", "net-vm3", check=False)
    assert proc.returncode != 0 and "No Network found" in proc.stderr
    proc = stack.openstack("server", "create", "--image", "net-image", "--flavor", "m1.nano", "--network",
                           "no-such-network", "net-vm3", check=False)
    assert proc.returncode != 0 and "No Network found" in proc.stderr

    # a member sees the shared network and only its project's ports; it cannot create networks
    name, password = _member(stack)
    as_member = {"user": name, "password": password, "project": name}
    assert [n["ID"] for n in stack.openstack_json("network", "list", **as_member)] == [net["ID"]]
    assert stack.openstack_json("port", "list", **as_member) == []
    stack.openstack("server", "create", "--image", "net-image", "--flavor", "m1.nano", "--network", net["ID"],
                    "--wait", "member-vm", **as_member)
    (mine,) = stack.openstack_json("port", "list", **as_member)
    assert mine["Status"] == "ACTIVE"
    proc = stack.openstack("port", "show", port["ID"], check=False, **as_member)
    assert proc.returncode != 0 and f"No Port found for {port['ID']}" in proc.stderr
    proc = stack.openstack("network", "create", "extra", check=False, **as_member)
    assert proc.returncode != 0 and "disallowed by policy" in proc.stderr
    proc = stack.openstack("network", "create", "extra", check=False)
    assert proc.returncode != 0 and "set by the configuration" in proc.stderr
    quotas = {row["Resource"]: row["Limit"] for row in stack.openstack_json("quota", "show", name)}
    assert quotas["networks"] == 0 and quotas["ports"] == -1 and quotas["instances"] >= 1

    # security groups: absent, as on a Neutron cloud without the extension
    proc = stack.openstack("security", "group", "list", check=False, **as_member)
    assert proc.returncode != 0 and "404" in proc.stderr and "/v2.0/security-groups" in proc.stderr
    proc = stack.openstack("server", "create", "--image", "net-image", "--flavor", "m1.nano", "--network",
                           net["ID"], "--security-group", "default", "member-vm2", check=False, **as_member)
    assert proc.returncode != 0 and "404" in proc.stderr and "security-groups?name=default" in proc.stderr
    assert not [s for s in stack.openstack_json("server", "list", **as_member) if s["Name"] == "member-vm2"]

    stack.openstack("server", "delete", "--wait", "member-vm", **as_member)
    assert stack.openstack_json("port", "list", **as_member) == []
    stack.openstack("server", "delete", "--wait", "net-vm1", "net-vm2")
    ids = {p["ID"] for p in stack.openstack_json("port", "list")}
    assert port["ID"] not in ids and other["ID"] not in ids
    stack.openstack("image", "delete", "net-image")
