"""os-hypervisors paging (2.33), uuid ids and hostname pattern (2.53), /search before 2.53, and
os-simple-tenant-usage paging (2.40)."""
from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest

from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)


def _v(version: str) -> dict:
    return {"OpenStack-API-Version": f"compute {version}"}


@pytest.fixture
def nodes(stratus_env) -> list[tuple[int, str]]:
    """Three hypervisors (node-a1, node-a2, node-b1): their (id, uuid) in id order."""
    from core.db import write_session
    from core.models import ComputeNode, Service, utcnow
    out = []
    with write_session() as s:
        for i, name in enumerate(("node-a1", "node-a2", "node-b1")):
            svc = Service(host=f"c{i}", binary="nova-compute", topic="compute", last_seen_at=utcnow())
            s.add(svc)
            s.flush()
            node = ComputeNode(service_id=svc.id, host=f"c{i}", hypervisor_hostname=name, hypervisor_type="fake",
                               vcpus=4, memory_mb=4096, local_gb=40)
            s.add(node)
            s.flush()
            out.append((node.id, node.uuid))
    return out


def _marker(link: dict) -> str:
    return parse_qs(urlparse(link["href"]).query)["marker"][0]


def test_hypervisors_paging_from_2_33(client, admin, nodes):
    h = {**admin.headers, **_v("2.33")}
    first = client.get("/v2.1/os-hypervisors?limit=2", headers=h).get_json()
    assert [x["id"] for x in first["hypervisors"]] == [nodes[0][0], nodes[1][0]]
    (link,) = first["hypervisors_links"]
    assert link["rel"] == "next" and "/v2.1/os-hypervisors?" in link["href"] and "limit=2" in link["href"]
    assert _marker(link) == str(nodes[1][0])
    rest = client.get(f"/v2.1/os-hypervisors/detail?limit=2&marker={nodes[1][0]}", headers=h).get_json()
    assert [x["hypervisor_hostname"] for x in rest["hypervisors"]] == ["node-b1"]
    assert "hypervisors_links" not in rest and "vcpus" in rest["hypervisors"][0]
    assert client.get("/v2.1/os-hypervisors?marker=999", headers=h).status_code == 400
    assert client.get("/v2.1/os-hypervisors?limit=-1", headers=h).status_code == 400
    old = client.get("/v2.1/os-hypervisors?limit=1&marker=999", headers={**admin.headers, **_v("2.32")})
    assert old.status_code == 200 and len(old.get_json()["hypervisors"]) == 3  # ignored before 2.33
    assert "hypervisors_links" not in old.get_json()


def test_hypervisors_uuid_ids_and_pattern_from_2_53(client, admin, nodes):
    h = {**admin.headers, **_v("2.53")}
    page = client.get("/v2.1/os-hypervisors?limit=1", headers=h).get_json()
    assert page["hypervisors"][0]["id"] == nodes[0][1]
    assert _marker(page["hypervisors_links"][0]) == nodes[0][1]
    nxt = client.get(f"/v2.1/os-hypervisors?marker={nodes[0][1]}", headers=h).get_json()
    assert [x["id"] for x in nxt["hypervisors"]] == [nodes[1][1], nodes[2][1]]
    assert client.get(f"/v2.1/os-hypervisors?marker={nodes[0][0]}", headers=h).status_code == 400
    found = client.get("/v2.1/os-hypervisors/detail?hypervisor_hostname_pattern=-a", headers=h).get_json()
    assert [x["hypervisor_hostname"] for x in found["hypervisors"]] == ["node-a1", "node-a2"]
    assert client.get("/v2.1/os-hypervisors?hypervisor_hostname_pattern=zz", headers=h).status_code == 404
    both = client.get("/v2.1/os-hypervisors?hypervisor_hostname_pattern=a&limit=1", headers=h)
    assert both.status_code == 400 and "Paging over hypervisors" in both.get_json()["badRequest"]["message"]
    assert client.get("/v2.1/os-hypervisors/a/search", headers=h).status_code == 404  # removed at 2.53



def test_a_hypervisors_page_loads_only_its_own_rows(client, admin, nodes):
    """A page is one indexed query after the marker (10,000 hosts: 11 pages, each loading 1,000 nodes, not all)."""
    from sqlalchemy import event

    from core.models import ComputeNode
    loaded: list[int] = []
    listener = lambda target, context: loaded.append(target.id)  # noqa: E731
    event.listen(ComputeNode, "load", listener)
    try:
        page = client.get(f"/v2.1/os-hypervisors/detail?limit=1&marker={nodes[0][1]}",
                          headers={**admin.headers, **_v("2.53")}).get_json()
    finally:
        event.remove(ComputeNode, "load", listener)
    assert [x["id"] for x in page["hypervisors"]] == [nodes[1][1]]
    assert loaded == [nodes[1][0]]

def test_hypervisor_search_before_2_53(client, admin, make_user, nodes):
    h = {**admin.headers, **_v("2.52")}
    body = client.get("/v2.1/os-hypervisors/-a/search", headers=h).get_json()
    assert body == {"hypervisors": [{"id": nodes[i][0], "hypervisor_hostname": f"node-a{i + 1}", "state": "up",
                                     "status": "enabled"} for i in (0, 1)]}
    assert client.get("/v2.1/os-hypervisors/zz/search", headers=h).status_code == 404
    member = make_user("mia", "proj-m", "member")
    assert client.get("/v2.1/os-hypervisors/a/search", headers={**member.headers, **_v("2.52")}).status_code == 403


def _launch_servers(client, world: World, extra: int) -> list[str]:
    from core.db import write_session
    from core.models import Instance
    for i in range(extra):
        resp = client.post("/v2.1/servers", json={"server": {"name": f"vm{i}", "imageRef": world.image_id,
                                                             "flavorRef": world.flavor_id, "networks": "none"}},
                           headers={**world.a.headers, **COMPUTE})
        assert resp.status_code == 202, resp.get_json()
    launched = dt.datetime(2026, 1, 1)
    with write_session() as s:
        rows = s.query(Instance).order_by(Instance.id).all()
        for inst in rows:
            inst.launched_at = launched
        return [inst.uuid for inst in rows]


def test_simple_tenant_usage_paging_from_2_40(client, world: World):
    uuids = _launch_servers(client, world, 2)
    h = {**world.admin.headers, **_v("2.40")}
    period = "start=2026-01-01T00:00:00&end=2026-01-02T00:00:00"
    first = client.get(f"/v2.1/os-simple-tenant-usage?{period}&limit=2&detailed=1", headers=h).get_json()
    assert [u["instance_id"] for u in first["tenant_usages"][0]["server_usages"]] == uuids[:2]
    assert first["tenant_usages"][0]["total_hours"] == pytest.approx(48.0)
    (link,) = first["tenant_usages_links"]
    assert _marker(link) == uuids[1] and "start=2026-01-01" in link["href"]
    rest = client.get(f"/v2.1/os-simple-tenant-usage?{period}&limit=2&detailed=1&marker={uuids[1]}",
                      headers=h).get_json()
    assert [u["instance_id"] for u in rest["tenant_usages"][0]["server_usages"]] == uuids[2:]
    assert "tenant_usages_links" not in rest
    assert client.get(f"/v2.1/os-simple-tenant-usage?marker={world.image_id}", headers=h).status_code == 400
    project = world.a.project_id
    one = client.get(f"/v2.1/os-simple-tenant-usage/{project}?{period}&limit=1", headers=h).get_json()
    assert one["tenant_usage"]["total_hours"] == pytest.approx(24.0)
    assert f"/os-simple-tenant-usage/{project}?" in one["tenant_usage_links"][0]["href"]
    old = client.get(f"/v2.1/os-simple-tenant-usage?{period}&limit=1",
                     headers={**world.admin.headers, **_v("2.39")}).get_json()
    assert old["tenant_usages"][0]["total_hours"] == pytest.approx(72.0) and "tenant_usages_links" not in old


def test_hypervisor_cpu_info_object_from_2_28_and_empty_servers_from_2_75(client, admin, nodes):
    detail = lambda v: client.get("/v2.1/os-hypervisors/detail", headers={**admin.headers, **_v(v)}).get_json()
    assert detail("2.27")["hypervisors"][0]["cpu_info"] == "{}"
    assert detail("2.28")["hypervisors"][0]["cpu_info"] == {}
    listed = lambda v: client.get("/v2.1/os-hypervisors?with_servers=true",
                                  headers={**admin.headers, **_v(v)}).get_json()["hypervisors"]
    assert all("servers" not in h for h in listed("2.74"))  # no guests anywhere: omitted before 2.75
    assert all(h["servers"] == [] for h in listed("2.75"))
    show = lambda v: client.get(f"/v2.1/os-hypervisors/{nodes[0][1]}?with_servers=true",
                                headers={**admin.headers, **_v(v)}).get_json()["hypervisor"]
    assert "servers" not in show("2.74") and show("2.75")["servers"] == []
