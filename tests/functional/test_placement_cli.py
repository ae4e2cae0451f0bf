"""The unmodified openstack CLI with osc-placement (requirements-cli.txt) against real Stratus processes, on every
backend: Placement's face of the compute hosts' rows and of a server's claim."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.services


def test_placement_with_osc_placement(stack, tmp_path):
    image_file = tmp_path / "disk.img"
    image_file.write_bytes(b"\x00" * 4096)
    stack.openstack("image", "create", "--file", str(image_file), "--disk-format", "raw", "--container-format",
                    "bare", "placement-image")
    server = stack.openstack_json("server", "create", "--image", "placement-image", "--flavor", "m1.nano",
                                  "--nic", "none", "--wait", "placement-vm")
    host = server["OS-EXT-SRV-ATTR:host"]

    providers = stack.openstack_json("resource", "provider", "list")
    assert len(providers) >= 2
    node = next(p for p in providers if stack.openstack_json("resource", "provider", "show", p["uuid"])["name"]
                == server["OS-EXT-SRV-ATTR:hypervisor_hostname"])
    shown = stack.openstack_json("resource", "provider", "show", node["uuid"])
    assert shown["uuid"] == node["uuid"] and shown["generation"] >= 1  # moved by the claim

    inventory = {i["resource_class"]: i for i in stack.openstack_json(
        "resource", "provider", "inventory", "list", node["uuid"])}
    assert set(inventory) >= {"VCPU", "MEMORY_MB"}

    # the server's allocation is its claim, on its host's provider
    allocation = stack.openstack_json("resource", "provider", "allocation", "show", server["id"])
    assert [a["resource_provider"] for a in allocation] == [node["uuid"]]
    assert allocation[0]["resources"]["VCPU"] == 1
    usage = {u["resource_class"]: u["usage"] for u in stack.openstack_json(
        "resource", "provider", "usage", "show", node["uuid"])}
    assert usage["VCPU"] >= 1
    project = stack.openstack_json("server", "show", "placement-vm")["project_id"]
    totals = {u["resource_class"]: u["usage"] for u in stack.openstack_json("resource", "usage", "show", project)}
    assert totals["VCPU"] >= 1

    candidates = stack.openstack_json("allocation", "candidate", "list", "--resource", "VCPU=1")
    assert node["uuid"] in {c["resource provider"] for c in candidates}

    # reserving all memory takes the host out of the candidates (the claim and the scheduler read the same row)
    memory = inventory["MEMORY_MB"]["total"]
    with pytest.raises(Exception):  # below what the server holds: 409 placement.inventory.inuse
        stack.openstack("resource", "provider", "inventory", "class", "set", node["uuid"], "MEMORY_MB",
                        "--total", str(memory), "--reserved", str(memory))
    used = usage["MEMORY_MB"]
    stack.openstack("resource", "provider", "inventory", "class", "set", node["uuid"], "MEMORY_MB", "--total",
                    str(memory), "--reserved", str(memory - used))
    candidates = stack.openstack_json("allocation", "candidate", "list", "--resource", "MEMORY_MB=64")
    assert node["uuid"] not in {c["resource provider"] for c in candidates}
    stack.openstack("resource", "provider", "inventory", "class", "set", node["uuid"], "MEMORY_MB", "--total",
                    str(memory), "--reserved", "0")

    # a hand-added provider with a custom class, its inventories set and deleted
    stack.openstack("resource", "class", "create", "CUSTOM_NFS_GB")
    assert "CUSTOM_NFS_GB" in {c["name"] for c in stack.openstack_json("resource", "class", "list")}
    pool = stack.openstack_json("resource", "provider", "create", "nfs-pool")
    stack.openstack("resource", "provider", "inventory", "set", pool["uuid"], "--resource", "CUSTOM_NFS_GB=500",
                    "--resource", "DISK_GB=100")
    classes = {i["resource_class"] for i in stack.openstack_json(
        "resource", "provider", "inventory", "list", pool["uuid"])}
    assert classes == {"CUSTOM_NFS_GB", "DISK_GB"}
    stack.openstack("resource", "provider", "inventory", "delete", pool["uuid"], "--resource-class", "DISK_GB")
    classes = {i["resource_class"] for i in stack.openstack_json(
        "resource", "provider", "inventory", "list", pool["uuid"])}
    assert classes == {"CUSTOM_NFS_GB"}

    # traits and aggregates
    stack.openstack("trait", "create", "CUSTOM_FAST_DISK")
    assert "CUSTOM_FAST_DISK" in {t["name"] for t in stack.openstack_json("trait", "list")}
    traits = stack.openstack_json("resource", "provider", "trait", "set", "--trait", "CUSTOM_FAST_DISK",
                                  "--trait", "HW_CPU_X86_AVX2", node["uuid"])
    assert {t["name"] for t in traits} >= {"CUSTOM_FAST_DISK", "HW_CPU_X86_AVX2", "COMPUTE_NODE"}
    aggregate = stack.openstack_json("aggregate", "create", "placement-agg")
    generation = stack.openstack_json("resource", "provider", "show", node["uuid"])["generation"]
    aggs = stack.openstack_json("resource", "provider", "aggregate", "set", "--aggregate", aggregate["uuid"],
                                "--generation", str(generation), node["uuid"])
    assert [a["uuid"] for a in aggs] == [aggregate["uuid"]]
    assert stack.openstack_json("aggregate", "show", "placement-agg")["hosts"] == [host]

    stack.openstack("server", "delete", "--wait", "placement-vm")
    assert stack.openstack_json("resource", "provider", "allocation", "show", server["id"]) == []
