"""Image API v2 subset: create/upload/download/list/paging/filters/patch/delete, checksums, visibility, errors."""
from __future__ import annotations

import base64
import hashlib
import io
from urllib.parse import parse_qs, urlparse

import pytest

from app.error_formats import title
from core import image_store as store
from tests.unit.conftest import PUBLIC_URL

PATCH = "application/openstack-images-v2.1-json-patch"
DATA = b"stratus image data " * 1000


def _glance_error(resp, code):
    """Glance's error as webob writes it for a request without Accept (text/plain: the status line, then the
    explanation); a 401 is keystonemiddleware's JSON."""
    assert resp.status_code == code, resp.get_data(as_text=True)
    if code == 401:
        assert resp.get_json()["error"]["code"] == 401
        return
    assert resp.content_type == "text/plain; charset=UTF-8"
    status, _, explanation = resp.get_data(as_text=True).partition("\n\n")
    assert status == f"{code} {title(code)}" and explanation.strip()


def _create(client, cred, **fields):
    body = {"name": "img", "disk_format": "qcow2", "container_format": "bare", **fields}
    resp = client.post("/image/v2/images", json=body, headers=cred.headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def _upload(client, cred, image_id, data=DATA, **headers):
    return client.put(f"/image/v2/images/{image_id}/file", data=data,
                      headers={**cred.headers, "Content-Type": "application/octet-stream", **headers})


def test_versions_document_is_public(client):
    resp = client.get("/image/")
    assert resp.status_code == 300
    versions = resp.get_json()["versions"]
    assert versions[0]["status"] == "CURRENT" and versions[0]["id"].startswith("v2.")
    assert all(v["links"][0]["href"] == f"{PUBLIC_URL}/image/v2/" for v in versions)
    assert {v["id"] for v in versions} >= {"v2.0", "v2.1"}
    assert client.get("/image").status_code == 300


def test_create_upload_download(client, admin):
    img = _create(client, admin, name="cirros", min_disk=1, min_ram=64, tags=["a", "b"],
                  hw_qemu_guest_agent="yes", os_distro="cirros")
    assert img["status"] == "queued" and img["visibility"] == "shared" and img["owner"] == admin.project_id
    assert img["size"] is None and img["checksum"] is None and img["virtual_size"] is None
    assert img["self"] == f"/v2/images/{img['id']}" and img["file"] == f"/v2/images/{img['id']}/file"
    assert img["schema"] == "/v2/schemas/image" and img["os_hidden"] is False and img["protected"] is False
    assert img["hw_qemu_guest_agent"] == "yes" and img["os_distro"] == "cirros" and img["tags"] == ["a", "b"]
    assert img["created_at"].endswith("Z") and img["updated_at"].endswith("Z")
    # No data yet.
    assert client.get(f"/image/v2/images/{img['id']}/file", headers=admin.headers).status_code == 204
    resp = _upload(client, admin, img["id"])
    assert resp.status_code == 204
    shown = client.get(f"/image/v2/images/{img['id']}", headers=admin.headers).get_json()
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert shown["os_hash_algo"] == "sha256" and shown["os_hash_value"] == hashlib.sha256(DATA).hexdigest()
    assert store.path_for(img["id"]).read_bytes() == DATA
    resp = client.get(f"/image/v2/images/{img['id']}/file", headers=admin.headers)
    assert resp.status_code == 200 and resp.data == DATA
    assert resp.headers["Content-MD5"] == shown["checksum"]
    assert resp.headers["Content-Type"] == "application/octet-stream"
    # Data can be uploaded only once.
    _glance_error(_upload(client, admin, img["id"]), 409)


def test_create_with_id_and_duplicate(client, admin):
    iid = "11111111-2222-3333-4444-555555555555"
    assert _create(client, admin, id=iid)["id"] == iid
    resp = client.post("/image/v2/images", json={"id": iid}, headers=admin.headers)
    _glance_error(resp, 409)
    _glance_error(client.post("/image/v2/images", json={"id": "nope"}, headers=admin.headers), 400)


@pytest.mark.parametrize("body,code", [
    ({"disk_format": "floppy"}, 400), ({"container_format": "box"}, 400), ({"visibility": "everyone"}, 400),
    ({"min_disk": -1}, 400), ({"protected": "yes"}, 400), ({"tags": "x"}, 400), ({"status": "active"}, 403),
    ({"size": 5}, 403), ({"os_hash_value": "x"}, 403), ({"foo": {"nested": 1}}, 400), ({"checksum": "zz"}, 400),
])
def test_create_validation(client, admin, body, code):
    _glance_error(client.post("/image/v2/images", json=body, headers=admin.headers), code)


def test_checksum_mismatch_content_md5(client, admin):
    img = _create(client, admin)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    _glance_error(_upload(client, admin, img["id"], **{"Content-MD5": bad}), 400)
    shown = client.get(f"/image/v2/images/{img['id']}", headers=admin.headers).get_json()
    assert shown["status"] == "queued" and shown["size"] is None
    assert not store.exists(img["id"])
    assert not [p for p in store.image_dir().iterdir()], "temporary file left behind"
    # The right checksum (hex or base64) is accepted.
    good = base64.b64encode(hashlib.md5(DATA).digest()).decode()
    assert _upload(client, admin, img["id"], **{"Content-MD5": good}).status_code == 204


def test_checksum_mismatch_preset_checksum(client, admin):
    img = _create(client, admin, checksum=hashlib.md5(b"other").hexdigest())
    _glance_error(_upload(client, admin, img["id"]), 400)
    assert client.get(f"/image/v2/images/{img['id']}", headers=admin.headers).get_json()["status"] == "queued"
    assert not store.exists(img["id"])
    img2 = _create(client, admin, checksum=hashlib.md5(DATA).hexdigest())
    assert _upload(client, admin, img2["id"]).status_code == 204


def test_too_large(client, admin):
    img = _create(client, admin)
    _glance_error(_upload(client, admin, img["id"], data=b"x" * ((1 << 20) + 1)), 413)
    assert client.get(f"/image/v2/images/{img['id']}", headers=admin.headers).get_json()["status"] == "queued"
    assert not store.exists(img["id"])
    assert _upload(client, admin, img["id"], data=b"x" * (1 << 20)).status_code == 204


def test_too_large_chunked_without_content_length(client, admin):
    img = _create(client, admin)
    resp = client.put(f"/image/v2/images/{img['id']}/file", input_stream=io.BytesIO(b"y" * ((1 << 20) + 10)),
                      headers={**admin.headers, "Content-Type": "application/octet-stream",
                               "Transfer-Encoding": "chunked"},
                      environ_overrides={"wsgi.input_terminated": True})
    _glance_error(resp, 413)
    assert client.get(f"/image/v2/images/{img['id']}", headers=admin.headers).get_json()["status"] == "queued"
    assert list(store.image_dir().iterdir()) == []
    resp = client.put(f"/image/v2/images/{img['id']}/file", input_stream=io.BytesIO(DATA),
                      headers={**admin.headers, "Content-Type": "application/octet-stream",
                               "Transfer-Encoding": "chunked"},
                      environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 204
    assert client.get(f"/image/v2/images/{img['id']}", headers=admin.headers).get_json()["size"] == len(DATA)


def test_store_write_stream_limits(stratus_env):
    iid = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    with pytest.raises(store.ImageTooLarge):
        store.write_stream(iid, io.BytesIO(b"x" * 100), max_size=99, chunk_size=7)
    with pytest.raises(store.ChecksumMismatch):
        store.write_stream(iid, io.BytesIO(b"abc"), expected_md5="0" * 32)
    assert list(store.image_dir().iterdir()) == []
    size, md5, sha = store.write_stream(iid, io.BytesIO(b"abc"), max_size=3, chunk_size=2)
    assert (size, md5, sha) == (3, hashlib.md5(b"abc").hexdigest(), hashlib.sha256(b"abc").hexdigest())
    assert store.delete(iid) and not store.delete(iid)
    with pytest.raises(ValueError):
        store.path_for("../etc/passwd")


def test_delete_and_protected(client, admin):
    img = _create(client, admin, protected=True)
    assert _upload(client, admin, img["id"]).status_code == 204
    _glance_error(client.delete(f"/image/v2/images/{img['id']}", headers=admin.headers), 403)
    resp = client.patch(f"/image/v2/images/{img['id']}", headers={**admin.headers, "Content-Type": PATCH},
                        json=[{"op": "replace", "path": "/protected", "value": False}])
    assert resp.status_code == 200
    assert client.delete(f"/image/v2/images/{img['id']}", headers=admin.headers).status_code == 204
    assert not store.exists(img["id"])
    _glance_error(client.get(f"/image/v2/images/{img['id']}", headers=admin.headers), 404)
    _glance_error(client.delete(f"/image/v2/images/{img['id']}", headers=admin.headers), 404)


def test_patch(client, admin):
    img = _create(client, admin, foo="1")
    url = f"/image/v2/images/{img['id']}"
    h = {**admin.headers, "Content-Type": PATCH}
    resp = client.patch(url, headers=h, json=[
        {"op": "add", "path": "/bar", "value": "2"},
        {"op": "replace", "path": "/foo", "value": "one"},
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "add", "path": "/tags/-", "value": "t1"},
        {"op": "replace", "path": "/min_ram", "value": 128},
    ])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert (body["bar"], body["foo"], body["name"], body["tags"], body["min_ram"]) == ("2", "one", "renamed",
                                                                                      ["t1"], 128)
    body = client.patch(url, headers=h, json=[{"op": "remove", "path": "/bar"}]).get_json()
    assert "bar" not in body
    _glance_error(client.patch(url, headers=h, json=[{"op": "remove", "path": "/bar"}]), 409)
    _glance_error(client.patch(url, headers=h, json=[{"op": "replace", "path": "/nope", "value": "x"}]), 409)
    _glance_error(client.patch(url, headers=h, json=[{"op": "replace", "path": "/status", "value": "active"}]),
                  403)
    _glance_error(client.patch(url, headers=h, json=[{"op": "remove", "path": "/name"}]), 403)
    _glance_error(client.patch(url, headers=h, json=[{"op": "move", "path": "/name"}]), 400)
    _glance_error(client.patch(url, headers=admin.headers, json=[]), 415)
    assert client.get(url, headers=admin.headers).get_json()["foo"] == "one"


def test_list_paging_sorting_filters(client, admin):
    ids = [_create(client, admin, name=f"img-{i}", tags=["even"] if i % 2 == 0 else [], kind=str(i % 3))["id"]
           for i in range(7)]
    seen, url, pages = [], "/v2/images?limit=3&sort_key=name&sort_dir=asc", 0
    while url:
        body = client.get("/image" + url, headers=admin.headers).get_json()
        assert body["schema"] == "/v2/schemas/images" and body["first"].startswith("/v2/images")
        seen += [im["name"] for im in body["images"]]
        url, pages = body.get("next"), pages + 1
        if url:
            assert url.startswith("/v2/images?") and parse_qs(urlparse(url).query)["limit"] == ["3"]
    assert seen == [f"img-{i}" for i in range(7)] and pages == 3
    # Default order: newest first (created_at desc, id as tie-breaker) and a full page without next.
    body = client.get("/image/v2/images", headers=admin.headers).get_json()
    assert len(body["images"]) == 7 and "next" not in body
    assert [im["name"] for im in client.get("/image/v2/images?sort=name:desc",
                                            headers=admin.headers).get_json()["images"]][0] == "img-6"
    # Filters.
    one = client.get("/image/v2/images?name=img-3", headers=admin.headers).get_json()["images"]
    assert [im["id"] for im in one] == [ids[3]]
    tagged = client.get("/image/v2/images?tag=even", headers=admin.headers).get_json()["images"]
    assert len(tagged) == 4
    by_prop = client.get("/image/v2/images?kind=0", headers=admin.headers).get_json()["images"]
    assert sorted(im["name"] for im in by_prop) == ["img-0", "img-3", "img-6"]
    assert _upload(client, admin, ids[0]).status_code == 204
    active = client.get("/image/v2/images?status=active", headers=admin.headers).get_json()["images"]
    assert [im["id"] for im in active] == [ids[0]]
    owner = client.get(f"/image/v2/images?owner={admin.project_id}&visibility=shared",
                       headers=admin.headers).get_json()["images"]
    assert len(owner) == 7
    assert client.get("/image/v2/images?visibility=public", headers=admin.headers).get_json()["images"] == []
    # Marker paging with filters keeps the filter in the next link.
    page = client.get("/image/v2/images?tag=even&limit=2&sort_key=name&sort_dir=asc", headers=admin.headers)
    nxt = page.get_json()["next"]
    assert "tag=even" in nxt
    rest = client.get("/image" + nxt, headers=admin.headers).get_json()["images"]
    assert [im["name"] for im in rest] == ["img-4", "img-6"]
    # Errors.
    _glance_error(client.get("/image/v2/images?marker=00000000-0000-0000-0000-000000000000",
                             headers=admin.headers), 400)
    _glance_error(client.get("/image/v2/images?sort_key=bogus", headers=admin.headers), 400)
    _glance_error(client.get("/image/v2/images?limit=x", headers=admin.headers), 400)


def test_hidden_images(client, admin):
    hidden = _create(client, admin, name="hidden", os_hidden=True)
    assert hidden["os_hidden"] is True
    _create(client, admin, name="shown")
    names = [im["name"] for im in client.get("/image/v2/images", headers=admin.headers).get_json()["images"]]
    assert names == ["shown"]
    names = [im["name"] for im in client.get("/image/v2/images?os_hidden=true",
                                             headers=admin.headers).get_json()["images"]]
    assert names == ["hidden"]


def test_visibility_across_projects(client, admin, make_user):
    alice = make_user("alice", "p-alice", "member")
    bob = make_user("bob", "p-bob", "member")
    reader = make_user("rita", "p-alice", "reader")
    private = _create(client, alice, name="alice-private", visibility="private")
    shared = _create(client, alice, name="alice-shared")
    assert _upload(client, alice, private["id"]).status_code == 204
    public = _create(client, admin, name="admin-public", visibility="public")
    assert _upload(client, admin, public["id"]).status_code == 204
    admin_private = _create(client, admin, name="admin-private", visibility="private")
    _create(client, alice, name="alice-community", visibility="community")

    def names(cred, query=""):
        return sorted(im["name"] for im in client.get(f"/image/v2/images{query}",
                                                      headers=cred.headers).get_json()["images"])

    assert names(alice) == ["admin-public", "alice-community", "alice-private", "alice-shared"]
    assert names(reader) == names(alice)
    assert names(bob) == ["admin-public"]
    assert names(bob, "?visibility=community") == ["alice-community"]
    assert set(names(admin)) >= {"admin-private", "alice-private", "alice-shared"}
    # Bob cannot see Alice's private/shared images: 404 everywhere.
    for iid in (private["id"], shared["id"], admin_private["id"]):
        _glance_error(client.get(f"/image/v2/images/{iid}", headers=bob.headers), 404)
        _glance_error(client.get(f"/image/v2/images/{iid}/file", headers=bob.headers), 404)
        _glance_error(client.delete(f"/image/v2/images/{iid}", headers=bob.headers), 404)
        _glance_error(client.patch(f"/image/v2/images/{iid}", json=[],
                                   headers={**bob.headers, "Content-Type": PATCH}), 404)
    # Public: readable and downloadable by all, changeable by nobody but the owner/admin.
    assert client.get(f"/image/v2/images/{public['id']}/file", headers=bob.headers).data == DATA
    _glance_error(client.delete(f"/image/v2/images/{public['id']}", headers=bob.headers), 403)
    _glance_error(client.patch(f"/image/v2/images/{public['id']}", headers={**bob.headers, "Content-Type": PATCH},
                               json=[{"op": "add", "path": "/x", "value": "y"}]), 403)
    # Readers read, but do not write.
    assert client.get(f"/image/v2/images/{private['id']}/file", headers=reader.headers).data == DATA
    _glance_error(client.post("/image/v2/images", json={"name": "r"}, headers=reader.headers), 403)
    _glance_error(_upload(client, reader, shared["id"]), 403)
    _glance_error(client.delete(f"/image/v2/images/{shared['id']}", headers=reader.headers), 403)
    # Only admins publicize or set another owner.
    _glance_error(client.post("/image/v2/images", json={"visibility": "public"}, headers=alice.headers), 403)
    _glance_error(client.post("/image/v2/images", json={"owner": bob.project_id}, headers=alice.headers), 403)
    _glance_error(client.patch(f"/image/v2/images/{shared['id']}", headers={**alice.headers, "Content-Type": PATCH},
                               json=[{"op": "replace", "path": "/visibility", "value": "public"}]), 403)
    given = _create(client, admin, name="for-bob", owner=bob.project_id, visibility="private")
    assert "for-bob" in names(bob)
    assert client.delete(f"/image/v2/images/{given['id']}", headers=bob.headers).status_code == 204


def test_error_bodies_and_auth(client, admin):
    _glance_error(client.get("/image/v2/images"), 401)
    _glance_error(client.get("/image/v2/images/not-a-uuid", headers=admin.headers), 404)
    _glance_error(client.get("/image/v2/images/00000000-0000-0000-0000-000000000000", headers=admin.headers), 404)
    _glance_error(client.post("/image/v2/images", data="[]", headers={**admin.headers,
                                                                      "Content-Type": "application/json"}), 400)


def test_schemas_and_info(client, admin):
    image = client.get("/image/v2/schemas/image", headers=admin.headers).get_json()
    assert image["name"] == "image" and "name" in image["properties"]
    assert image["additionalProperties"] == {"type": "string"}
    images = client.get("/image/v2/schemas/images", headers=admin.headers).get_json()
    assert images["properties"]["images"]["items"]["name"] == "image"
    assert client.get("/image/v2/info/import", headers=admin.headers).status_code == 200
    assert client.get("/image/v2/info/stores", headers=admin.headers).get_json()["stores"][0]["default"] == "true"
