"""The unmodified openstack CLI with osc-placement (requirements-cli.txt) against real Stratus processes, on every
backend: Placement's face of the compute hosts' rows and of a server's claim."""
from __future__ import annotations

import pytest
import requests

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
    # leave the shared stack as it was
    stack.openstack("aggregate", "remove", "host", "placement-agg", host)
    stack.openstack("aggregate", "delete", "placement-agg")
    stack.openstack("resource", "provider", "delete", pool["uuid"])
    stack.openstack("resource", "provider", "trait", "delete", node["uuid"])


def _placement(stack) -> requests.Session:
    s = requests.Session()
    s.headers.update({"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "placement 1.39"})
    return s


def _compute(stack) -> requests.Session:
    s = requests.Session()
    s.headers.update({"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.96"})
    return s


def _check_one_truth(stack, p: requests.Session) -> None:
    """Every provider's usages are the sum of its allocations; every allocation is a live server's or an
    in-progress move's."""
    nova = _compute(stack)
    live = {s["id"] for s in nova.get(f"{stack.url}/v2.1/servers?all_tenants=1").json()["servers"]}
    moving = {m["uuid"] for m in nova.get(f"{stack.url}/v2.1/os-migrations").json()["migrations"]
              if m["status"] in ("migrating", "accepted", "queued", "preparing", "running", "finished", "reverting")}
    for prov in p.get(f"{stack.url}/placement/resource_providers").json()["resource_providers"]:
        usages = p.get(f"{stack.url}/placement/resource_providers/{prov['uuid']}/usages").json()["usages"]
        allocations = p.get(f"{stack.url}/placement/resource_providers/{prov['uuid']}/allocations").json()[
            "allocations"]
        summed: dict[str, int] = {}
        for consumer, entry in allocations.items():
            assert consumer in live or consumer in moving, (consumer, live, moving)
            for rc, n in entry["resources"].items():
                summed[rc] = summed.get(rc, 0) + n
        assert {rc: n for rc, n in usages.items() if n} == summed, prov["name"]


def test_one_truth_after_a_storm_and_an_exhausted_inventory(stack, tmp_path):
    """Boots, a resize held (two consumers), a migration, deletes; then every provider's MEMORY_MB reserved up to
    its total makes the next boot fail with the scheduler naming the memory filter."""
    image_file = tmp_path / "disk.img"
    image_file.write_bytes(b"\x00" * 4096)
    image = stack.openstack_json("image", "create", "--file", str(image_file), "--disk-format", "raw",
                                 "--container-format", "bare", "storm-image")
    nova, p = _compute(stack), _placement(stack)
    ids = []
    for i in range(6):
        r = nova.post(f"{stack.url}/v2.1/servers", json={"server": {
            "name": f"storm-{i}", "imageRef": image["id"], "flavorRef": "42", "networks": "none"}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["server"]["id"])
    for sid in ids:
        stack.wait_server(sid, "ACTIVE")
    act = lambda sid, body: nova.post(f"{stack.url}/v2.1/servers/{sid}/action", json=body)  # noqa: E731
    assert act(ids[0], {"resize": {"flavorRef": "84"}}).status_code == 202
    assert act(ids[1], {"migrate": None}).status_code == 202
    for sid in ids[2:4]:
        assert nova.delete(f"{stack.url}/v2.1/servers/{sid}").status_code == 204
    stack.wait_server(ids[0], "VERIFY_RESIZE")
    stack.wait_server(ids[1], "VERIFY_RESIZE")
    for sid in ids[2:4]:
        stack.wait_server(sid, "DELETED")
    # during the move: the server's consumer holds the new flavor, the migration's the old one
    held = p.get(f"{stack.url}/placement/allocations/{ids[0]}").json()["allocations"]
    assert [e["resources"]["MEMORY_MB"] for e in held.values()] == [192]
    migration = next(m for m in nova.get(f"{stack.url}/v2.1/os-migrations?instance_uuid={ids[0]}").json()[
        "migrations"] if m["status"] == "finished")
    source = p.get(f"{stack.url}/placement/allocations/{migration['uuid']}").json()
    assert [e["resources"]["MEMORY_MB"] for e in source["allocations"].values()] == [128]
    assert source["consumer_type"] == "MIGRATION"
    _check_one_truth(stack, p)
    assert act(ids[0], {"confirmResize": None}).status_code == 204
    assert act(ids[1], {"revertResize": None}).status_code == 202
    stack.wait_server(ids[0], "ACTIVE")
    stack.wait_server(ids[1], "ACTIVE")
    _check_one_truth(stack, p)
    assert p.get(f"{stack.url}/placement/allocations/{migration['uuid']}").json()["allocations"] == {}

    providers = p.get(f"{stack.url}/placement/resource_providers?resources=VCPU:1").json()["resource_providers"]
    saved = {}
    try:
        for prov in providers:
            url = f"{stack.url}/placement/resource_providers/{prov['uuid']}/inventories/MEMORY_MB"
            inv = p.get(url).json()
            saved[prov["uuid"]] = inv
            used = p.get(f"{stack.url}/placement/resource_providers/{prov['uuid']}/usages").json()["usages"][
                "MEMORY_MB"]
            r = p.put(url, json={"resource_provider_generation": inv["resource_provider_generation"],
                                 "total": inv["total"], "reserved": inv["total"] - used,
                                 "allocation_ratio": inv["allocation_ratio"]})
            assert r.status_code == 200, r.text
        r = nova.post(f"{stack.url}/v2.1/servers", json={"server": {
            "name": "storm-starved", "imageRef": image["id"], "flavorRef": "42", "networks": "none"}})
        starved = r.json()["server"]["id"]
        stack.wait_server(starved, "ERROR")
        fault = nova.get(f"{stack.url}/v2.1/servers/{starved}").json()["server"]["fault"]["message"]
        assert "RamFilter removed" in fault, fault
        assert all(prov["name"] in fault for prov in providers), fault  # the exhausted hosts are named
        nova.delete(f"{stack.url}/v2.1/servers/{starved}")
    finally:
        for uuid, inv in saved.items():
            url = f"{stack.url}/placement/resource_providers/{uuid}/inventories/MEMORY_MB"
            gen = p.get(url).json()["resource_provider_generation"]
            p.put(url, json={"resource_provider_generation": gen, "total": inv["total"], "reserved": 0,
                             "allocation_ratio": inv["allocation_ratio"]})
    for sid in (ids[0], ids[1], ids[4], ids[5]):
        nova.delete(f"{stack.url}/v2.1/servers/{sid}")
    for sid in (ids[0], ids[1], ids[4], ids[5]):
        stack.wait_server(sid, "DELETED")
    _check_one_truth(stack, p)
