"""Interoperable image import (Glance v2): discovery, stage + glance-direct, web-download behind the allow-list,
the tasks that record an import, and the os_glance_* properties."""
from __future__ import annotations

import hashlib
import http.server
import threading
import time

import pytest

from app.image import importer
from core import image_store as store
from core.settings import get_settings
from tests.unit.test_image import DATA, _create, _glance_error, _upload


def _stage(client, cred, image_id, data=DATA):
    return client.put(f"/image/v2/images/{image_id}/stage", data=data,
                      headers={**cred.headers, "Content-Type": "application/octet-stream"})


def _import(client, cred, image_id, **method):
    return client.post(f"/image/v2/images/{image_id}/import", json={"method": method}, headers=cred.headers)


def _show(client, cred, image_id):
    return client.get(f"/image/v2/images/{image_id}", headers=cred.headers).get_json()


def test_discovery(client, admin):
    info = client.get("/image/v2/info/import", headers=admin.headers).get_json()
    assert info == {"import-methods": {"description": "Import methods available.", "type": "array",
                                       "value": ["glance-direct", "web-download"]}}
    assert client.get("/image/v2/info/stores", headers=admin.headers).get_json() == {
        "stores": [{"id": "file", "description": "Local file store", "default": "true"}]}
    resp = client.post("/image/v2/images", json={"name": "x"}, headers=admin.headers)
    assert resp.headers["OpenStack-image-import-methods"] == "glance-direct,web-download"


def test_glance_direct(client, admin, make_user):
    alice = make_user("alice", "p-alice", "member")
    bob = make_user("bob", "p-bob", "member")
    img = _create(client, alice, name="imported")
    _glance_error(_import(client, alice, img["id"], name="glance-direct"), 409)  # nothing staged
    _glance_error(_stage(client, bob, img["id"]), 404)
    assert _stage(client, alice, img["id"]).status_code == 204
    staged = _show(client, alice, img["id"])
    assert staged["status"] == "uploading" and staged["size"] == len(DATA) and staged["checksum"] is None
    assert "os_glance_stage_host" not in staged
    _glance_error(_stage(client, alice, img["id"]), 409)
    _glance_error(_upload(client, alice, img["id"]), 409)
    _glance_error(_import(client, alice, img["id"], name="glance-direct-typo"), 400)
    _glance_error(client.post(f"/image/v2/images/{img['id']}/import", json={}, headers=alice.headers), 400)
    _glance_error(_import(client, bob, img["id"], name="glance-direct"), 404)
    resp = _import(client, alice, img["id"], name="glance-direct")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    done = _show(client, alice, img["id"])
    assert done["status"] == "active" and done["size"] == len(DATA)
    assert done["checksum"] == hashlib.md5(DATA).hexdigest()
    assert done["os_hash_value"] == hashlib.sha256(DATA).hexdigest()
    assert done["os_glance_importing_to_stores"] == "" and done["os_glance_failed_import"] == ""
    assert "os_glance_import_task" not in done
    for op in ({"op": "remove", "path": "/os_glance_failed_import"},
               {"op": "replace", "path": "/os_glance_importing_to_stores", "value": "x"}):
        _glance_error(client.patch(f"/image/v2/images/{img['id']}", json=[op], headers={
            **alice.headers, "Content-Type": "application/openstack-images-v2.1-json-patch"}), 403)
    assert client.get(f"/image/v2/images/{img['id']}/file", headers=alice.headers).data == DATA
    assert not store.staged_path(img["id"]).exists()
    _glance_error(_import(client, alice, img["id"], name="glance-direct"), 409)  # active
    # The task: the image's readers see it, /v2/tasks is the admins'.
    tasks = client.get(f"/image/v2/images/{img['id']}/tasks", headers=alice.headers).get_json()["tasks"]
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["type"], task["status"], task["owner"], task["image_id"]) == (
        "api_image_import", "success", alice.project_id, img["id"])
    assert task["input"]["import_req"]["method"]["name"] == "glance-direct"
    assert task["result"] == {"image_id": img["id"]} and task["expires_at"]
    _glance_error(client.get("/image/v2/tasks", headers=alice.headers), 403)
    listed = client.get("/image/v2/tasks", headers=admin.headers).get_json()
    assert [t["id"] for t in listed["tasks"]] == [task["id"]] and listed["schema"] == "/v2/schemas/tasks"
    assert "input" not in listed["tasks"][0]
    assert client.get(f"/image/v2/tasks/{task['id']}", headers=admin.headers).get_json()["status"] == "success"
    _glance_error(client.get("/image/v2/tasks/00000000-0000-0000-0000-000000000000", headers=admin.headers), 404)
    _glance_error(client.get("/image/v2/tasks?status=bogus", headers=admin.headers), 400)
    assert client.get("/image/v2/schemas/task", headers=admin.headers).get_json()["name"] == "task"


def test_stage_refusals(client, admin):
    no_formats = client.post("/image/v2/images", json={"name": "bare"}, headers=admin.headers).get_json()
    assert _stage(client, admin, no_formats["id"]).status_code == 204
    _glance_error(_import(client, admin, no_formats["id"], name="glance-direct"), 409)  # no container_format
    big = _create(client, admin)
    _glance_error(_stage(client, admin, big["id"], data=b"x" * ((1 << 20) + 1)), 413)
    assert _show(client, admin, big["id"])["status"] == "queued"
    assert not store.staged_path(big["id"]).exists()
    staged = _create(client, admin)
    assert _stage(client, admin, staged["id"]).status_code == 204
    assert client.delete(f"/image/v2/images/{staged['id']}", headers=admin.headers).status_code == 204
    assert not store.staged_path(staged["id"]).exists()


def test_web_download_refused_by_default(client, admin):
    img = _create(client, admin)
    for uri in ("http://example.com/cirros.img", "http://127.0.0.1/x", "file:///etc/passwd", None):
        resp = _import(client, admin, img["id"], name="web-download", uri=uri)
        _glance_error(resp, 400)
        assert f"\n\nURI for web-download does not pass filtering: {uri}\n" in resp.get_data(as_text=True)
    shown = _show(client, admin, img["id"])
    assert shown["status"] == "queued" and "os_glance_import_task" not in shown
    assert client.get(f"/image/v2/images/{img['id']}/tasks", headers=admin.headers).get_json()["tasks"] == []


@pytest.mark.parametrize("uri,allowed", [
    ("http://images.example:8080/a", "images.example:8080"), ("https://images.example/a", "images.example"),
    ("http://IMAGES.example/a", "images.example"),
])
def test_uri_allowed(uri, allowed):
    assert importer.uri_allowed(uri, allowed)
    assert not importer.uri_allowed(uri, "")
    assert not importer.uri_allowed(uri, "other.example")


def test_uri_refused_forms():
    assert not importer.uri_allowed("http://images.example:8081/a", "images.example:8080")
    assert not importer.uri_allowed("http://images.example:8080/a", "images.example")
    assert not importer.uri_allowed("ftp://images.example/a", "images.example")
    assert not importer.uri_allowed("http://images.example:notaport/a", "images.example")


class _Server(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        self.wfile.write(DATA)

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _wait_status(client, cred, image_id, *statuses):
    deadline = time.monotonic() + 10
    while (shown := _show(client, cred, image_id))["status"] not in statuses:
        assert time.monotonic() < deadline, shown
        time.sleep(0.05)
    return shown


def test_web_download_from_an_allowed_host(client, admin, web_server, monkeypatch):
    monkeypatch.setenv("STRATUS_IMAGE_IMPORT_ALLOWED_HOSTS", web_server)
    get_settings.cache_clear()
    img = _create(client, admin)
    assert _import(client, admin, img["id"], name="web-download", uri=f"http://{web_server}/i.img").status_code \
        == 202
    done = _wait_status(client, admin, img["id"], "active")
    assert done["checksum"] == hashlib.md5(DATA).hexdigest() and done["size"] == len(DATA)
    # A redirect away from the allowed hosts fails the task; the image goes back to queued.
    other = _create(client, admin)
    assert _import(client, admin, other["id"], name="web-download",
                   uri=f"http://{web_server}/redirect").status_code == 202
    failed = _wait_status(client, admin, other["id"], "queued")
    assert failed["os_glance_failed_import"] == "file" and "os_glance_import_task" not in failed
    deadline = time.monotonic() + 10
    while (task := client.get(f"/image/v2/images/{other['id']}/tasks",
                              headers=admin.headers).get_json()["tasks"][0])["status"] == "processing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert task["status"] == "failure" and "does not pass filtering" in task["message"]
    assert not store.exists(other["id"])
