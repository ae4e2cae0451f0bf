"""Keystone's catalog APIs: regions, services and endpoints (admin writes, Keystone's read rules, errors), and the
token's catalog and /v3/auth/catalog built from those rows."""
from __future__ import annotations

from tests.unit.conftest import PUBLIC_URL, issue


def _error(resp, code):
    assert resp.status_code == code, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    assert err["code"] == code and err["message"] and err["title"]
    return err["message"]


def _catalog(client, cred) -> dict[str, dict]:
    resp = issue(client, cred.user_name, cred.password, cred.project_name)
    return {svc["type"]: svc for svc in resp.get_json()["token"]["catalog"]}


def test_bootstrap_seeds_the_catalog_the_token_carries(client, admin):
    catalog = _catalog(client, admin)
    assert set(catalog) == {"identity", "compute", "image", "placement", "network"}
    assert catalog["compute"]["name"] == "nova"
    urls = {(e["interface"], e["region_id"], e["region"], e["url"]) for e in catalog["compute"]["endpoints"]}
    assert urls == {(i, "RegionOne", "RegionOne", f"{PUBLIC_URL}/v2.1") for i in ("public", "internal", "admin")}
    assert {e["url"] for e in catalog["identity"]["endpoints"]} == {f"{PUBLIC_URL}/identity"}
    assert {e["url"] for e in catalog["image"]["endpoints"]} == {f"{PUBLIC_URL}/image"}
    assert {e["url"] for e in catalog["placement"]["endpoints"]} == {f"{PUBLIC_URL}/placement"}
    assert {e["url"] for e in catalog["network"]["endpoints"]} == {f"{PUBLIC_URL}/networking"}
    assert catalog["network"]["name"] == "neutron"
    same = client.get("/identity/v3/auth/catalog", headers=admin.headers).get_json()["catalog"]
    assert {s["type"]: s for s in same} == catalog
    services = client.get("/identity/v3/services", headers=admin.headers).get_json()["services"]
    assert sorted(s["type"] for s in services) == ["compute", "identity", "image", "network", "placement"]
    assert len(client.get("/identity/v3/endpoints", headers=admin.headers).get_json()["endpoints"]) == 15


def test_bootstrap_again_is_idempotent_and_follows_a_new_url(client, admin, monkeypatch):
    from app.identity import service
    from core import db
    from core.settings import get_settings
    monkeypatch.setenv("STRATUS_PUBLIC_URL", "http://moved.test")
    get_settings.cache_clear()
    try:
        with db.write_session() as s:
            service.bootstrap_catalog(s)
    finally:
        monkeypatch.setenv("STRATUS_PUBLIC_URL", PUBLIC_URL)
        get_settings.cache_clear()
    eps = client.get("/identity/v3/endpoints", headers=admin.headers).get_json()["endpoints"]
    assert len(eps) == 15
    assert {e["url"] for e in eps} == {"http://moved.test/v2.1", "http://moved.test/identity",
                                       "http://moved.test/image", "http://moved.test/placement",
                                       "http://moved.test/networking"}


def test_service_and_endpoint_crud_changes_the_catalog(client, admin):
    h = admin.headers
    resp = client.post("/identity/v3/services", json={"service": {"type": "block-storage", "name": "cinder",
                                                                   "description": "Block Storage API"}}, headers=h)
    assert resp.status_code == 201
    svc = resp.get_json()["service"]
    assert svc["type"] == "block-storage" and svc["enabled"] is True and svc["links"]["self"].endswith(svc["id"])
    # A service without endpoints is not in the catalog.
    assert "block-storage" not in _catalog(client, admin)
    resp = client.post("/identity/v3/endpoints", json={"endpoint": {
        "service_id": svc["id"], "interface": "public", "url": "http://volume.test/$(project_id)s",
        "region_id": "RegionOne"}}, headers=h)
    assert resp.status_code == 201
    ep = resp.get_json()["endpoint"]
    assert ep["region"] == ep["region_id"] == "RegionOne" and ep["enabled"] is True
    storage = _catalog(client, admin)["block-storage"]
    assert [e["url"] for e in storage["endpoints"]] == [f"http://volume.test/{admin.project_id}"]
    assert client.get(f"/identity/v3/endpoints?service_id={svc['id']}", headers=h).get_json()["endpoints"] \
        == [ep]
    assert client.get("/identity/v3/services?type=block-storage", headers=h).get_json()["services"] == [svc]

    resp = client.patch(f"/identity/v3/endpoints/{ep['id']}", json={"endpoint": {"enabled": False}}, headers=h)
    assert resp.get_json()["endpoint"]["enabled"] is False
    assert "block-storage" not in _catalog(client, admin)
    client.patch(f"/identity/v3/endpoints/{ep['id']}", json={"endpoint": {"enabled": True}}, headers=h)
    resp = client.patch(f"/identity/v3/services/{svc['id']}", json={"service": {"enabled": False}}, headers=h)
    assert resp.get_json()["service"]["enabled"] is False
    assert "block-storage" not in _catalog(client, admin)

    assert client.delete(f"/identity/v3/services/{svc['id']}", headers=h).status_code == 204
    _error(client.get(f"/identity/v3/services/{svc['id']}", headers=h), 404)
    _error(client.get(f"/identity/v3/endpoints/{ep['id']}", headers=h), 404)  # deleted with its service


def test_catalog_input_errors(client, admin):
    h = admin.headers
    _error(client.post("/identity/v3/services", json={"service": {"name": "x"}}, headers=h), 400)
    _error(client.post("/identity/v3/services", json={"service": {"type": 5}}, headers=h), 400)
    svc = client.post("/identity/v3/services", json={"service": {"type": "t"}}, headers=h).get_json()["service"]
    good = {"service_id": svc["id"], "interface": "public", "url": "http://x.test/"}
    for bad in ({"interface": "private"}, {"url": "not a url"}, {"service_id": "nope"}, {"region_id": "nowhere"}):
        _error(client.post("/identity/v3/endpoints", json={"endpoint": {**good, **bad}}, headers=h), 400)
    for missing in good:
        body = {k: v for k, v in good.items() if k != missing}
        _error(client.post("/identity/v3/endpoints", json={"endpoint": body}, headers=h), 400)
    # The legacy 'region' creates the region (Keystone's backward compatibility).
    resp = client.post("/identity/v3/endpoints", json={"endpoint": {**good, "region": "RegionTwo"}}, headers=h)
    assert resp.status_code == 201
    assert client.get("/identity/v3/regions/RegionTwo", headers=h).status_code == 200
    _error(client.get("/identity/v3/endpoints/nope", headers=h), 404)
    _error(client.delete("/identity/v3/services/nope", headers=h), 404)
    assert client.get("/identity/v3/endpoints", headers=h).status_code == 200
    from core import db
    from core.models import Endpoint
    with db.read_session() as s:
        assert s.query(Endpoint).count() == 16  # 15 bootstrapped + 1 created: nothing half-written by refused requests


def test_regions(client, admin):
    h = admin.headers
    resp = client.post("/identity/v3/regions", json={"region": {"id": "RegionTwo", "description": "second"}},
                       headers=h)
    assert resp.status_code == 201
    assert resp.get_json()["region"] == {"id": "RegionTwo", "description": "second", "parent_region_id": None,
                                         "links": {"self": f"{PUBLIC_URL}/identity/v3/regions/RegionTwo"}}
    _error(client.post("/identity/v3/regions", json={"region": {"id": "RegionTwo"}}, headers=h), 409)
    generated = client.post("/identity/v3/regions", json={"region": {"parent_region_id": "RegionTwo"}},
                            headers=h).get_json()["region"]
    assert generated["id"] and generated["parent_region_id"] == "RegionTwo"
    assert client.put("/identity/v3/regions/Edge", json={"region": {"parent_region_id": generated["id"]}},
                      headers=h).status_code == 201
    _error(client.post("/identity/v3/regions", json={"region": {"parent_region_id": "nope"}}, headers=h), 404)
    _error(client.patch("/identity/v3/regions/RegionTwo", json={"region": {"parent_region_id": "Edge"}},
                        headers=h), 400)  # a cycle
    ids = [r["id"] for r in client.get("/identity/v3/regions", headers=h).get_json()["regions"]]
    assert set(ids) == {"RegionOne", "RegionTwo", generated["id"], "Edge"}
    assert [r["id"] for r in client.get("/identity/v3/regions?parent_region_id=RegionTwo",
                                        headers=h).get_json()["regions"]] == [generated["id"]]
    # A region with endpoints (RegionOne's) cannot go; deleting a parent deletes its children.
    assert "associated endpoints" in _error(client.delete("/identity/v3/regions/RegionOne", headers=h), 403)
    assert client.delete("/identity/v3/regions/RegionTwo", headers=h).status_code == 204
    ids = [r["id"] for r in client.get("/identity/v3/regions", headers=h).get_json()["regions"]]
    assert ids == ["RegionOne"]


def test_catalog_policy(client, make_user):
    member = make_user("cat-member", "cat-project", "member")
    h = member.headers
    # Keystone: regions are read by anyone signed in; services and endpoints by admins (system readers).
    assert client.get("/identity/v3/regions", headers=h).status_code == 200
    assert client.get("/identity/v3/regions/RegionOne", headers=h).status_code == 200
    for path in ("/identity/v3/services", "/identity/v3/endpoints"):
        _error(client.get(path, headers=h), 403)
    _error(client.post("/identity/v3/services", json={"service": {"type": "x"}}, headers=h), 403)
    _error(client.post("/identity/v3/regions", json={"region": {"id": "R"}}, headers=h), 403)
    # The catalog itself is every project token's.
    assert {s["type"] for s in client.get("/identity/v3/auth/catalog", headers=h).get_json()["catalog"]} \
        == {"identity", "compute", "image", "placement", "network"}
