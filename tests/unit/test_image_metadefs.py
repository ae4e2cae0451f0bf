"""Metadata definitions (Glance metadefs), read-only from ``metadefs_dir``: an empty catalog by default, the
namespaces of the directory otherwise, with the schemas glanceclient and Horizon fetch."""
from __future__ import annotations

import json

from app.image import metadefs
from core.settings import get_settings
from tests.unit.test_image import _glance_error

SHUTDOWN = {
    "namespace": "OS::Compute::GuestShutdownBehavior", "display_name": "Shutdown Behavior",
    "description": "Shutdown behaviour.", "visibility": "public", "protected": True,
    "resource_type_associations": [{"name": "OS::Glance::Image"}],
    "properties": {"os_shutdown_timeout": {"title": "Shutdown timeout", "type": "integer", "minimum": 0}},
    "objects": [],
}
PRIVATE = {"namespace": "Site::Secret", "visibility": "private", "owner": "nobody",
           "resource_type_associations": [{"name": "OS::Nova::Flavor", "prefix": "site:"}]}


def test_empty_catalog(client, admin):
    body = client.get("/image/v2/metadefs/namespaces", headers=admin.headers).get_json()
    assert body == {"namespaces": [], "first": "/v2/metadefs/namespaces",
                    "schema": "/v2/schemas/metadefs/namespaces"}
    assert client.get("/image/v2/metadefs/resource_types", headers=admin.headers).get_json() == {
        "resource_types": []}
    _glance_error(client.get("/image/v2/metadefs/namespaces/OS::Nope", headers=admin.headers), 404)


def test_catalog_from_directory(client, admin, make_user, tmp_path, monkeypatch):
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "shutdown.json").write_text(json.dumps(SHUTDOWN))
    (tmp_path / "defs" / "private.json").write_text(json.dumps(PRIVATE))
    (tmp_path / "defs" / "broken.json").write_text("{not json")
    monkeypatch.setenv("STRATUS_METADEFS_DIR", str(tmp_path / "defs"))
    get_settings.cache_clear()
    metadefs._catalog.cache_clear()
    alice = make_user("alice", "p-alice", "member")
    names = [ns["namespace"] for ns in client.get("/image/v2/metadefs/namespaces?sort_key=namespace&sort_dir=asc",
                                                  headers=admin.headers).get_json()["namespaces"]]
    assert names == ["OS::Compute::GuestShutdownBehavior", "Site::Secret"]
    listed = client.get("/image/v2/metadefs/namespaces", headers=alice.headers).get_json()["namespaces"]
    assert [ns["namespace"] for ns in listed] == ["OS::Compute::GuestShutdownBehavior"]
    assert listed[0]["resource_type_associations"][0]["name"] == "OS::Glance::Image"
    assert "properties" not in listed[0] and listed[0]["schema"] == "/v2/schemas/metadefs/namespace"
    by_type = client.get("/image/v2/metadefs/namespaces?resource_types=OS::Nova::Flavor",
                         headers=admin.headers).get_json()["namespaces"]
    assert [ns["namespace"] for ns in by_type] == ["Site::Secret"]
    shown = client.get("/image/v2/metadefs/namespaces/OS::Compute::GuestShutdownBehavior",
                       headers=alice.headers).get_json()
    assert shown["properties"]["os_shutdown_timeout"]["type"] == "integer" and shown["protected"] is True
    _glance_error(client.get("/image/v2/metadefs/namespaces/Site::Secret", headers=alice.headers), 404)
    props = client.get("/image/v2/metadefs/namespaces/OS::Compute::GuestShutdownBehavior/properties",
                       headers=alice.headers).get_json()
    assert list(props["properties"]) == ["os_shutdown_timeout"]
    types = client.get("/image/v2/metadefs/resource_types", headers=admin.headers).get_json()["resource_types"]
    assert [t["name"] for t in types] == ["OS::Glance::Image", "OS::Nova::Flavor"]
    page = client.get("/image/v2/metadefs/namespaces?limit=1&sort_key=namespace&sort_dir=asc",
                      headers=admin.headers).get_json()
    assert len(page["namespaces"]) == 1 and "marker=OS" in page["next"]
    _glance_error(client.get("/image/v2/metadefs/namespaces?sort_key=bogus", headers=admin.headers), 400)


def test_schemas(client, admin):
    for kind in ("namespace", "namespaces", "resource_type", "resource_types", "object", "objects", "property",
                 "properties", "tag", "tags"):
        resp = client.get(f"/image/v2/schemas/metadefs/{kind}", headers=admin.headers)
        assert resp.status_code == 200 and resp.get_json()["name"], kind
    namespace = client.get("/image/v2/schemas/metadefs/namespace", headers=admin.headers).get_json()
    assert namespace["required"] == ["namespace"] and "resource_type_associations" in namespace["properties"]
    _glance_error(client.get("/image/v2/schemas/metadefs/bogus", headers=admin.headers), 404)
