"""Placement API in-process: version document and microversions, errors, policy, providers, inventories, usages,
allocations, allocation candidates, resource classes, traits, aggregates. Compute nodes are providers: their
rows are the truth, so a claim shows as an allocation and an inventory write changes what the claim allows."""
from __future__ import annotations

import uuid as uuidlib

import pytest

from tests.unit.inprocess import inprocess_conductor  # noqa: F401  (fixture)

PV = {"OpenStack-API-Version": "placement 1.39"}


@pytest.fixture
def node(stratus_env):
    """A compute host 'h1' with 8 VCPU, 4096 MB, 100 GB (ratios 4, 1, 1), as report_service registers it."""
    from core import db
    from core.models import ComputeNode
    from core.writes.resources import report_service
    with db.write_session() as s:
        report_service(s, "h1", {"hypervisor_hostname": "h1.example", "hypervisor_type": "fake",
                                 "hypervisor_version": 1, "vcpus": 8, "memory_mb": 4096, "local_gb": 100,
                                 "host_ip": "10.0.0.1"})
    with db.read_session() as s:
        n = s.query(ComputeNode).filter_by(host="h1").one()
        return n.uuid


def _h(cred, version: str = "1.39") -> dict:
    return {**cred.headers, "OpenStack-API-Version": f"placement {version}"}


def _server(project: str, user: str, vcpus: int, ram: int, disk: int) -> str:
    """A live instance row and its claim on h1 (what the conductor's claim step writes)."""
    from core import db
    from core.models import Flavor, Instance
    from core.writes.resources import claim
    uuid = str(uuidlib.uuid4())
    with db.write_session() as s:
        flavor = s.query(Flavor).first()
        if flavor is None:
            flavor = Flavor(flavorid="f1", name="f1", vcpus=vcpus, memory_mb=ram, root_gb=disk)
            s.add(flavor)
            s.flush()
        inst = Instance(uuid=uuid, display_name="s", hostname="s", project_id=project, user_id=user, image_ref="i",
                        flavor_id=flavor.id, flavor_snapshot={}, vcpus=vcpus, memory_mb=ram, root_gb=disk,
                        vm_state="active", reservation_id="r", networks_request="none")
        s.add(inst)
        s.flush()
        assert claim(s, inst, "h1")
    return uuid


def test_version_document_is_public_and_states_what_is_not_supported(client):
    resp = client.get("/placement/")
    assert resp.status_code == 200
    version = resp.get_json()["versions"][0]
    assert (version["min_version"], version["max_version"]) == ("1.0", "1.39")
    assert any("reshaper" in note for note in version["not_supported"])
    assert resp.headers["OpenStack-API-Version"] == "placement 1.0"


def test_microversion_echo_406_and_error_shape(client, admin):
    resp = client.get("/placement/resource_providers", headers=_h(admin, "1.14"))
    assert resp.status_code == 200 and resp.headers["OpenStack-API-Version"] == "placement 1.14"
    resp = client.get("/placement/resource_providers", headers=_h(admin, "1.40"))
    assert resp.status_code == 406
    error = resp.get_json()["errors"][0]
    assert error["status"] == 406 and error["max_version"] == "1.39" and error["request_id"].startswith("req-")
    assert set(error) >= {"status", "title", "detail", "code", "request_id"}
    assert client.get("/placement/resource_providers", headers=_h(admin, "latest")).headers[
        "OpenStack-API-Version"] == "placement 1.39"
    assert client.get("/placement/resource_providers", headers=_h(admin, "1.x")).status_code == 400
    assert client.get("/placement/resource_providers").status_code == 401


def test_policy_admin_and_service_roles_only(client, admin, make_user):
    member = make_user("mia", "proj-a", "member")
    resp = client.get("/placement/resource_providers", headers=_h(member))
    assert resp.status_code == 403 and resp.get_json()["errors"][0]["status"] == 403
    service = make_user("nova", "service", "service")
    assert client.get("/placement/resource_providers", headers=_h(service)).status_code == 200


def test_compute_node_is_a_provider_with_its_rows_as_inventories(client, admin, node):
    resp = client.get("/placement/resource_providers", headers=_h(admin))
    [prov] = resp.get_json()["resource_providers"]
    assert prov["uuid"] == node and prov["name"] == "h1.example" and prov["root_provider_uuid"] == node
    inv = client.get(f"/placement/resource_providers/{node}/inventories", headers=_h(admin)).get_json()
    assert inv["inventories"]["VCPU"] == {"total": 8, "reserved": 0, "min_unit": 1, "max_unit": 8,
                                          "step_size": 1, "allocation_ratio": 4.0}
    assert inv["inventories"]["MEMORY_MB"]["total"] == 4096 and inv["inventories"]["DISK_GB"]["total"] == 100
    assert client.get(f"/placement/resource_providers/{uuidlib.uuid4()}", headers=_h(admin)).status_code == 404


def test_claim_is_the_allocation_and_usage(client, admin, node, inprocess_conductor):
    server = _server("p1", "u1", 2, 512, 10)
    usages = client.get(f"/placement/resource_providers/{node}/usages", headers=_h(admin)).get_json()
    assert usages["usages"] == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 10}
    body = client.get(f"/placement/allocations/{server}", headers=_h(admin)).get_json()
    assert body["allocations"][node]["resources"] == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 10}
    assert body["project_id"] == "p1" and body["user_id"] == "u1" and body["consumer_type"] == "INSTANCE"
    by_provider = client.get(f"/placement/resource_providers/{node}/allocations", headers=_h(admin)).get_json()
    assert by_provider["allocations"] == {server: {"resources": {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 10}}}
    totals = client.get("/placement/usages?project_id=p1", headers=_h(admin, "1.9")).get_json()
    assert totals["usages"] == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 10}
    assert client.get("/placement/usages?project_id=p1&user_id=other", headers=_h(admin, "1.9")).get_json()[
        "usages"] == {}
    grouped = client.get("/placement/usages?project_id=p1", headers=_h(admin)).get_json()["usages"]
    assert grouped["INSTANCE"] == {"consumer_count": 1, "VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 10}
    # a live server's claim is not Placement's to delete
    resp = client.delete(f"/placement/allocations/{server}", headers=_h(admin))
    assert resp.status_code == 409


def test_inventory_write_changes_what_the_claim_allows(client, admin, node, inprocess_conductor):
    from core import db
    from core.models import ComputeNode
    _server("p1", "u1", 2, 512, 10)
    gen = client.get(f"/placement/resource_providers/{node}/inventories", headers=_h(admin)).get_json()[
        "resource_provider_generation"]
    # below what is allocated: 409 placement.inventory.inuse
    resp = client.put(f"/placement/resource_providers/{node}/inventories/MEMORY_MB", headers=_h(admin),
                      json={"resource_provider_generation": gen, "total": 4096, "reserved": 4000})
    assert resp.status_code == 409 and resp.get_json()["errors"][0]["code"] == "placement.inventory.inuse"
    # a stale generation: 409 placement.concurrent_update
    resp = client.put(f"/placement/resource_providers/{node}/inventories/MEMORY_MB", headers=_h(admin),
                      json={"resource_provider_generation": gen + 5, "total": 4096, "reserved": 1024})
    assert resp.status_code == 409 and resp.get_json()["errors"][0]["code"] == "placement.concurrent_update"
    resp = client.put(f"/placement/resource_providers/{node}/inventories/MEMORY_MB", headers=_h(admin),
                      json={"resource_provider_generation": gen, "total": 4096, "reserved": 3072})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["reserved"] == 3072 and resp.get_json()["resource_provider_generation"] == gen + 1
    # the scheduler's filter sees 512 MB free at once
    from scheduler.filters import RamFilter
    from scheduler.host_state import RequestSpec
    from tasks.host_cache import load_all
    with db.read_session() as s:
        [state] = load_all(s)
    assert RamFilter().filter_all([state], RequestSpec("x", 1, 512, 0)) == [state]
    assert RamFilter().filter_all([state], RequestSpec("x", 1, 513, 0)) == []
    # and so does the claim: one more 512 MB server fits, the next does not
    _server("p1", "u1", 1, 512, 1)
    from core.models import Instance
    from core.writes.resources import claim
    with db.write_session() as s:
        inst = s.query(Instance).first()
        assert not claim(s, inst, "h1")
        assert s.query(ComputeNode).one().memory_mb_reserved == 3072
    # a compute host's inventory classes come from its driver
    resp = client.delete(f"/placement/resource_providers/{node}/inventories/DISK_GB", headers=_h(admin))
    assert resp.status_code == 409


def test_hand_added_provider_crud_inventories_and_allocations(client, admin, node, inprocess_conductor):
    resp = client.post("/placement/resource_providers", headers=_h(admin), json={"name": "nfs-pool"})
    assert resp.status_code == 200, resp.get_json()
    rp = resp.get_json()
    assert rp["generation"] == 0 and rp["root_provider_uuid"] == rp["uuid"]
    uuid = rp["uuid"]
    assert client.post("/placement/resource_providers", headers=_h(admin),
                       json={"name": "nfs-pool"}).status_code == 409
    assert client.post("/placement/resource_providers", headers=_h(admin, "1.19"),
                       json={"name": "old"}).status_code == 201
    assert client.put("/placement/resource_classes/CUSTOM_NFS", headers=_h(admin)).status_code == 201
    assert client.put("/placement/resource_classes/CUSTOM_NFS", headers=_h(admin)).status_code == 204
    resp = client.put(f"/placement/resource_providers/{uuid}/inventories", headers=_h(admin), json={
        "resource_provider_generation": 0, "inventories": {"DISK_GB": {"total": 1000}, "CUSTOM_NFS": {"total": 4}}})
    assert resp.status_code == 200 and resp.get_json()["resource_provider_generation"] == 1
    consumer = str(uuidlib.uuid4())
    body = {"allocations": {uuid: {"resources": {"DISK_GB": 100}}}, "project_id": "p2", "user_id": "u2",
            "consumer_generation": None, "consumer_type": "INSTANCE"}
    assert client.put(f"/placement/allocations/{consumer}", headers=_h(admin), json=body).status_code == 204
    # a second write with a stale consumer generation
    resp = client.put(f"/placement/allocations/{consumer}", headers=_h(admin), json=body)
    assert resp.status_code == 409 and resp.get_json()["errors"][0]["code"] == "placement.concurrent_update"
    got = client.get(f"/placement/allocations/{consumer}", headers=_h(admin)).get_json()
    assert got["consumer_generation"] == 1 and got["allocations"][uuid]["resources"] == {"DISK_GB": 100}
    over = dict(body, consumer_generation=1, allocations={uuid: {"resources": {"DISK_GB": 2000}}})
    assert client.put(f"/placement/allocations/{consumer}", headers=_h(admin), json=over).status_code == 409
    # servers' providers are only allocated by claims
    to_node = dict(body, consumer_generation=1, allocations={node: {"resources": {"VCPU": 1}}})
    assert client.put(f"/placement/allocations/{consumer}", headers=_h(admin), json=to_node).status_code == 409
    assert client.get("/placement/usages?project_id=p2", headers=_h(admin, "1.9")).get_json()["usages"] == {
        "DISK_GB": 100}
    resp = client.delete(f"/placement/resource_providers/{uuid}/inventories/DISK_GB", headers=_h(admin))
    assert resp.status_code == 409 and resp.get_json()["errors"][0]["code"] == "placement.inventory.inuse"
    assert client.delete(f"/placement/resource_providers/{uuid}", headers=_h(admin)).status_code == 409
    assert client.delete(f"/placement/allocations/{consumer}", headers=_h(admin)).status_code == 204
    assert client.delete(f"/placement/resource_providers/{uuid}/inventories/DISK_GB",
                         headers=_h(admin)).status_code == 204
    resp = client.put(f"/placement/resource_providers/{uuid}", headers=_h(admin), json={"name": "nfs-2"})
    assert resp.status_code == 200 and resp.get_json()["name"] == "nfs-2"
    assert client.delete("/placement/resource_classes/CUSTOM_NFS", headers=_h(admin)).status_code == 409
    assert client.delete(f"/placement/resource_providers/{uuid}", headers=_h(admin)).status_code == 204
    assert client.delete("/placement/resource_classes/CUSTOM_NFS", headers=_h(admin)).status_code == 204
    assert client.delete("/placement/resource_classes/VCPU", headers=_h(admin)).status_code == 400


def test_allocation_candidates_follow_capacity_traits_and_aggregates(client, admin, node, inprocess_conductor):
    resp = client.get("/placement/allocation_candidates?resources=VCPU:1,MEMORY_MB:512", headers=_h(admin))
    body = resp.get_json()
    assert body["allocation_requests"] == [{"allocations": {node: {"resources": {"VCPU": 1, "MEMORY_MB": 512}}},
                                            "mappings": {"": [node]}}]
    assert body["provider_summaries"][node]["resources"]["VCPU"] == {"capacity": 32, "used": 0}
    too_big = client.get("/placement/allocation_candidates?resources=MEMORY_MB:5000", headers=_h(admin))
    assert too_big.get_json()["allocation_requests"] == []
    assert client.get("/placement/allocation_candidates?resources=CUSTOM_NOPE:1",
                      headers=_h(admin)).status_code == 400
    # traits: required and forbidden
    assert client.put("/placement/traits/CUSTOM_FAST", headers=_h(admin)).status_code == 201
    assert client.put("/placement/traits/NOT_CUSTOM", headers=_h(admin)).status_code == 400
    resp = client.put(f"/placement/resource_providers/{node}/traits", headers=_h(admin),
                      json={"traits": ["CUSTOM_FAST", "HW_CPU_X86_AVX2"], "resource_provider_generation": 99})
    assert resp.get_json()["errors"][0]["code"] == "placement.concurrent_update"
    resp = client.put(f"/placement/resource_providers/{node}/traits", headers=_h(admin),
                      json={"traits": ["CUSTOM_FAST", "HW_CPU_X86_AVX2"], "resource_provider_generation": 0})
    assert resp.status_code == 200 and resp.get_json()["resource_provider_generation"] == 1
    q = "/placement/allocation_candidates?resources=VCPU:1&required="
    assert len(client.get(q + "CUSTOM_FAST", headers=_h(admin)).get_json()["allocation_requests"]) == 1
    assert len(client.get(q + "!CUSTOM_FAST", headers=_h(admin)).get_json()["allocation_requests"]) == 0
    assert client.delete("/placement/traits/CUSTOM_FAST", headers=_h(admin)).status_code == 409
    # aggregates of a compute host are its host aggregates
    agg = client.post("/v2.1/os-aggregates", headers={**admin.headers, "OpenStack-API-Version": "compute 2.41"},
                      json={"aggregate": {"name": "fast"}}).get_json()["aggregate"]["uuid"]
    resp = client.put(f"/placement/resource_providers/{node}/aggregates", headers=_h(admin),
                      json={"aggregates": [agg], "resource_provider_generation": 1})
    assert resp.status_code == 200 and resp.get_json()["aggregates"] == [agg]
    hosts = client.get("/v2.1/os-aggregates", headers=admin.headers).get_json()["aggregates"][0]["hosts"]
    assert hosts == ["h1"]
    other = str(uuidlib.uuid4())
    assert len(client.get(q.replace("&required=", f"&member_of={agg}"),
                          headers=_h(admin)).get_json()["allocation_requests"]) == 1
    assert client.get(f"/placement/resource_providers?member_of={other}", headers=_h(admin)).get_json()[
        "resource_providers"] == []
    resp = client.put(f"/placement/resource_providers/{node}/aggregates", headers=_h(admin),
                      json={"aggregates": [other], "resource_provider_generation": 2})
    assert resp.status_code == 400


def test_allocation_candidates_at_several_hosts_limit_traits_and_shapes(client, admin, node, inprocess_conductor):
    """The candidates' fast path (plain rows, limit in the SQL): every host's summary and traits, the limit, Nova's
    !COMPUTE_STATUS_DISABLED left out in the SQL, a trait filter that needs more than the first `limit` rows, a
    hand-added provider after the compute nodes, and the older shapes."""
    from core import db
    from core.models import ComputeNode, Service
    from core.writes.resources import report_service
    with db.write_session() as s:
        for i in range(2, 6):
            report_service(s, f"h{i}", {"hypervisor_hostname": f"h{i}.example", "hypervisor_type": "fake",
                                        "hypervisor_version": 1, "vcpus": 8, "memory_mb": 4096, "local_gb": 0,
                                        "host_ip": "10.0.0.1", "traits": ["HW_CPU_X86_AVX2"] if i % 2 else []})
        s.query(Service).filter_by(host="h2").update({"disabled": True})
        s.query(ComputeNode).filter_by(host="h3").update({"vcpus_used": 32})  # full
    with db.read_session() as s:
        uuids = {n.host: n.uuid for n in s.query(ComputeNode)}
    client.put("/placement/traits/CUSTOM_LAST", headers=_h(admin))
    assert client.put(f"/placement/resource_providers/{uuids['h5']}/traits", headers=_h(admin), json={
        "traits": ["CUSTOM_LAST"], "resource_provider_generation": 0}).status_code == 200
    q = "/placement/allocation_candidates?resources=VCPU:1,MEMORY_MB:512"
    body = client.get(q, headers=_h(admin)).get_json()
    summaries = body["provider_summaries"]
    assert set(summaries) == {uuids[h] for h in ("h1", "h2", "h4", "h5")}
    assert [next(iter(r["allocations"])) for r in body["allocation_requests"]] == list(summaries)
    assert summaries[uuids["h2"]] == {
        "resources": {"VCPU": {"capacity": 32, "used": 0}, "MEMORY_MB": {"capacity": 4096, "used": 0}},
        "traits": ["COMPUTE_NODE", "COMPUTE_STATUS_DISABLED"], "parent_provider_uuid": None,
        "root_provider_uuid": uuids["h2"]}  # no DISK_GB inventory: its total is 0
    assert summaries[uuids["h5"]]["traits"] == ["COMPUTE_NODE", "CUSTOM_LAST", "HW_CPU_X86_AVX2"]
    assert summaries[uuids["h1"]]["resources"]["DISK_GB"] == {"capacity": 100, "used": 0}
    assert len(client.get(q + "&limit=2", headers=_h(admin)).get_json()["allocation_requests"]) == 2
    assert list(client.get(q + f"&in_tree={uuids['h4']}", headers=_h(admin)).get_json()[
        "provider_summaries"]) == [uuids["h4"]]
    assert client.get(q + f"&in_tree={uuids['h3']}", headers=_h(admin)).get_json()["provider_summaries"] == {}
    enabled = client.get(q + "&required=!COMPUTE_STATUS_DISABLED&limit=10", headers=_h(admin)).get_json()
    assert set(enabled["provider_summaries"]) == {uuids[h] for h in ("h1", "h4", "h5")}
    # the first row the limit lets through lacks the trait: the filter reads on until one has it
    last = client.get(q + "&required=CUSTOM_LAST&limit=1", headers=_h(admin)).get_json()
    assert list(last["provider_summaries"]) == [uuids["h5"]]
    assert client.get(q + "&required=CUSTOM_LAST,!CUSTOM_LAST",
                      headers=_h(admin)).get_json()["allocation_requests"] == []
    # a hand-added provider with VCPU comes after the compute nodes, within the limit
    pool = client.post("/placement/resource_providers", headers=_h(admin), json={"name": "pool"}).get_json()["uuid"]
    client.put(f"/placement/resource_providers/{pool}/inventories", headers=_h(admin), json={
        "resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}, "MEMORY_MB": {"total": 1024}}})
    every = client.get(q, headers=_h(admin)).get_json()["provider_summaries"]
    assert list(every)[-1] == pool and every[pool]["traits"] == []
    assert pool not in client.get(q + "&limit=4", headers=_h(admin)).get_json()["provider_summaries"]
    # older shapes: 1.26 summaries hold the asked classes only, 1.16 no traits, 1.11 allocations as a list
    assert set(client.get(q, headers=_h(admin, "1.26")).get_json()["provider_summaries"][uuids["h1"]][
        "resources"]) == {"VCPU", "MEMORY_MB"}
    assert "traits" not in client.get(q, headers=_h(admin, "1.16")).get_json()["provider_summaries"][uuids["h1"]]
    old = client.get(q, headers=_h(admin, "1.11")).get_json()["allocation_requests"][0]
    assert old == {"allocations": [{"resource_provider": {"uuid": uuids["h1"]},
                                    "resources": {"VCPU": 1, "MEMORY_MB": 512}}]}


def test_list_filters(client, admin, node, inprocess_conductor):
    client.post("/placement/resource_providers", headers=_h(admin), json={"name": "other"})
    names = lambda q: [p["name"] for p in client.get(  # noqa: E731
        "/placement/resource_providers" + q, headers=_h(admin)).get_json()["resource_providers"]]
    assert names("") == ["h1.example", "other"]
    assert names("?name=other") == ["other"]
    assert names(f"?uuid={node}") == ["h1.example"]
    assert names(f"?in_tree={node}") == ["h1.example"]
    assert names("?resources=VCPU:4") == ["h1.example"]
    assert names("?resources=VCPU:400") == []
    assert client.get("/placement/resource_providers?resources=VCPU:1", headers=_h(admin, "1.3")).status_code == 400
    assert client.get("/placement/resource_providers?bogus=1", headers=_h(admin)).status_code == 400
    assert "HW_CPU_X86_AVX2" in client.get("/placement/traits", headers=_h(admin)).get_json()["traits"]
    classes = [c["name"] for c in client.get("/placement/resource_classes", headers=_h(admin)).get_json()[
        "resource_classes"]]
    assert classes[:3] == ["VCPU", "MEMORY_MB", "DISK_GB"]


def test_traits_the_rows_imply_driver_compute_node_and_disabled(client, admin, node, inprocess_conductor):
    from core import db
    from core.models import ComputeNode, Service
    from core.writes.resources import report_service
    with db.write_session() as s:
        before = s.query(ComputeNode).one().generation
        report_service(s, "h1", {"hypervisor_hostname": "h1.example", "hypervisor_type": "fake",
                                 "hypervisor_version": 1, "vcpus": 8, "memory_mb": 4096, "local_gb": 100,
                                 "host_ip": "10.0.0.1", "traits": ["HW_ARCH_X86_64", "HW_CPU_X86_NOT_A_FLAG"]})
    with db.read_session() as s:
        assert s.query(ComputeNode).one().generation == before + 1  # its traits changed
    traits = client.get(f"/placement/resource_providers/{node}/traits", headers=_h(admin)).get_json()["traits"]
    assert traits == ["COMPUTE_NODE", "HW_ARCH_X86_64"]  # only standard names are kept
    q = "/placement/allocation_candidates?resources=VCPU:1&required=!COMPUTE_STATUS_DISABLED"
    assert len(client.get(q, headers=_h(admin)).get_json()["allocation_requests"]) == 1
    with db.write_session() as s:
        s.query(Service).update({"disabled": True})
    assert len(client.get(q, headers=_h(admin)).get_json()["allocation_requests"]) == 0
    assert "COMPUTE_STATUS_DISABLED" in client.get(f"/placement/resource_providers/{node}/traits",
                                                   headers=_h(admin)).get_json()["traits"]


def test_routes_and_shapes_follow_the_microversion(client, admin, node, inprocess_conductor):
    assert client.get("/placement/usages?project_id=p", headers=_h(admin, "1.8")).status_code == 404
    assert client.get("/placement/traits", headers=_h(admin, "1.5")).status_code == 404
    assert client.get("/placement/allocation_candidates?resources=VCPU:1",
                      headers=_h(admin, "1.9")).status_code == 404
    resp = client.get("/placement/nothing-here", headers=_h(admin))
    assert resp.status_code == 404 and resp.get_json()["errors"][0]["code"] == "placement.undefined_code"
    resp = client.post("/placement/resource_providers", headers=_h(admin, "1.19"), json={"name": "pool"})
    assert resp.status_code == 201 and not resp.data
    uuid = resp.headers["Location"].rsplit("/", 1)[1]
    assert resp.headers["Location"] == f"http://localhost/placement/resource_providers/{uuid}"
    assert client.delete(f"/placement/resource_providers/{uuid}/inventories",
                         headers=_h(admin, "1.4")).status_code == 405
    assert "parent_provider_uuid" not in client.get(f"/placement/resource_providers/{uuid}",
                                                    headers=_h(admin, "1.13")).get_json()
    client.put(f"/placement/resource_providers/{uuid}/inventories", headers=_h(admin),
               json={"resource_provider_generation": 0, "inventories": {"DISK_GB": {"total": 100}}})
    # 1.0-1.11: allocations as a list
    consumer = str(uuidlib.uuid4())
    resp = client.put(f"/placement/allocations/{consumer}", headers=_h(admin, "1.0"), json={
        "allocations": [{"resource_provider": {"uuid": uuid}, "resources": {"DISK_GB": 10}}]})
    assert resp.status_code == 204, resp.get_json()
    assert client.get(f"/placement/allocations/{consumer}", headers=_h(admin, "1.0")).get_json() == {
        "allocations": {uuid: {"resources": {"DISK_GB": 10}, "generation": 2}}}
    # 1.13: several consumers at once, all or none
    a, b = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    one = {"allocations": {uuid: {"resources": {"DISK_GB": 10}}}, "project_id": "p", "user_id": "u",
           "consumer_generation": None, "consumer_type": "INSTANCE"}
    assert client.post("/placement/allocations", headers=_h(admin, "1.12"), json={a: one}).status_code == 404
    too_much = dict(one, allocations={uuid: {"resources": {"DISK_GB": 90}}})
    assert client.post("/placement/allocations", headers=_h(admin), json={a: one, b: too_much}).status_code == 409
    assert client.get(f"/placement/allocations/{a}", headers=_h(admin)).get_json()["allocations"] == {}
    assert client.post("/placement/allocations", headers=_h(admin), json={a: one, b: one}).status_code == 204
    assert client.get(f"/placement/resource_providers/{uuid}/usages", headers=_h(admin)).get_json()[
        "usages"] == {"DISK_GB": 30}


def test_an_orphaned_claim_can_be_deleted_a_live_one_cannot(client, admin, node, inprocess_conductor):
    from core import db
    from core.models import Instance
    server = _server("p1", "u1", 1, 128, 1)
    assert client.delete(f"/placement/allocations/{server}", headers=_h(admin)).status_code == 409
    with db.write_session() as s:
        s.query(Instance).filter_by(uuid=server).update({"deleted": 1})
    assert client.delete(f"/placement/allocations/{server}", headers=_h(admin)).status_code == 204
    assert client.get(f"/placement/resource_providers/{node}/usages", headers=_h(admin)).get_json()[
        "usages"] == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    assert client.delete(f"/placement/allocations/{server}", headers=_h(admin)).status_code == 404


def test_deleting_a_compute_service_removes_its_provider_traits(client, admin, node, inprocess_conductor):
    from core import db
    from core.models import ProviderTrait, Service
    client.put("/placement/traits/CUSTOM_GONE", headers=_h(admin))
    assert client.put(f"/placement/resource_providers/{node}/traits", headers=_h(admin),
                      json={"traits": ["CUSTOM_GONE"], "resource_provider_generation": 0}).status_code == 200
    with db.read_session() as s:
        service = s.query(Service).one().uuid
    resp = client.delete(f"/v2.1/os-services/{service}",
                         headers={**admin.headers, "OpenStack-API-Version": "compute 2.53"})
    assert resp.status_code == 204, resp.get_json()
    with db.read_session() as s:
        assert s.query(ProviderTrait).count() == 0
    assert client.delete("/placement/traits/CUSTOM_GONE", headers=_h(admin)).status_code == 204


def test_no_valid_host_names_the_exhausted_hosts():
    from scheduler.host_state import HostState, RequestSpec
    from scheduler.manager import NoValidHost, select_destinations
    hosts = [HostState(host=f"h{i}", node_id=i, availability_zone="nova", enabled=True, up=True, vcpus=8,
                       memory_mb=4096, local_gb=100, memory_mb_reserved=4096 if i == 2 else 0) for i in range(3)]
    hosts[0].up = False
    hosts[1].memory_mb_used = 4000
    with pytest.raises(NoValidHost) as exc:
        select_destinations(hosts, RequestSpec("x", 1, 512, 1))
    assert exc.value.reason == "ComputeFilter removed 1 of 3 hosts (h0); RamFilter removed 2 of 2 hosts (h1, h2)."
    # a decision that finds a host keeps the short explanation
    assert select_destinations(hosts, RequestSpec("x", 1, 64, 1)).explanation == \
        "1 of 3 hosts passed the filters (ComputeFilter removed 1 of 3 hosts; RamFilter removed 1 of 2 hosts)"
