"""Image members (Glance v2 sharing), deactivation and tags: shapes, errors, policy, and what the boot path
(app/compute/boot_request.image_for_boot) makes of them."""
from __future__ import annotations

import pytest

from app.compute import boot_request
from app.context import RequestContext
from core.db import read_session
from core.errors import ApiError
from tests.unit.test_image import DATA, PATCH, _create, _glance_error, _upload


def _ctx(cred) -> RequestContext:
    return RequestContext(user_id="u", user_name="u", project_id=cred.project_id, project_name="p",
                          roles=("member", "reader"), request_id="req-1")


def _bootable(cred, image_id: str) -> bool:
    try:
        with read_session() as s:
            boot_request.image_for_boot(s, image_id, _ctx(cred))
        return True
    except ApiError as exc:
        assert exc.code == 400 and exc.message == "Can not find requested image", exc.message
        return False


def _names(client, cred, query=""):
    resp = client.get(f"/image/v2/images{query}", headers=cred.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return sorted(im["name"] for im in resp.get_json()["images"])


@pytest.fixture
def projects(make_user):
    return make_user("alice", "p-alice", "member"), make_user("bob", "p-bob", "member"), \
        make_user("carol", "p-carol", "member")


def test_members_lifecycle_and_visibility(client, admin, projects):
    alice, bob, carol = projects
    img = _create(client, alice, name="shared-img")
    assert img["visibility"] == "shared"
    assert _upload(client, alice, img["id"]).status_code == 204
    url = f"/image/v2/images/{img['id']}/members"
    # Before sharing: bob neither sees nor boots it.
    _glance_error(client.get(f"/image/v2/images/{img['id']}", headers=bob.headers), 404)
    assert not _bootable(bob, img["id"])

    resp = client.post(url, json={"member": bob.project_id}, headers=alice.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    member = resp.get_json()
    assert set(member) == {"created_at", "image_id", "member_id", "schema", "status", "updated_at"}
    assert (member["image_id"], member["member_id"], member["status"], member["schema"]) == (
        img["id"], bob.project_id, "pending", "/v2/schemas/member")
    _glance_error(client.post(url, json={"member": bob.project_id}, headers=alice.headers), 409)
    _glance_error(client.post(url, json={}, headers=alice.headers), 400)
    _glance_error(client.post(url, json={"member": ""}, headers=alice.headers), 400)
    # Pending: visible and bootable by its ID (Glance: "immediate access"), not in bob's list unless asked.
    assert client.get(f"/image/v2/images/{img['id']}", headers=bob.headers).status_code == 200
    assert _bootable(bob, img["id"]) and not _bootable(carol, img["id"])
    assert "shared-img" not in _names(client, bob)
    assert _names(client, bob, "?member_status=pending") == ["shared-img"]
    assert _names(client, bob, "?member_status=all") == ["shared-img"]
    _glance_error(client.get("/image/v2/images?member_status=bogus", headers=bob.headers), 400)
    # Bob (a member) cannot add members, delete them or change the image; carol sees nothing.
    _glance_error(client.post(url, json={"member": carol.project_id}, headers=bob.headers), 403)
    _glance_error(client.delete(f"{url}/{bob.project_id}", headers=bob.headers), 403)
    _glance_error(client.patch(f"/image/v2/images/{img['id']}", json=[],
                               headers={**bob.headers, "Content-Type": PATCH}), 403)
    _glance_error(client.get(url, headers=carol.headers), 404)
    _glance_error(client.get(f"{url}/{bob.project_id}", headers=carol.headers), 404)
    # The owner cannot set the member's status; the member can.
    _glance_error(client.put(f"{url}/{bob.project_id}", json={"status": "accepted"}, headers=alice.headers), 403)
    _glance_error(client.put(f"{url}/{bob.project_id}", json={"status": "maybe"}, headers=bob.headers), 400)
    _glance_error(client.put(f"{url}/{bob.project_id}", json={}, headers=bob.headers), 400)
    resp = client.put(f"{url}/{bob.project_id}", json={"status": "accepted"}, headers=bob.headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "accepted"
    assert "shared-img" in _names(client, bob)
    assert client.get(f"/image/v2/images/{img['id']}/file", headers=bob.headers).data == DATA
    # Lists: the owner sees every member, a member its own entry.
    client.post(url, json={"member": carol.project_id}, headers=alice.headers)
    owner_view = client.get(url, headers=alice.headers).get_json()
    assert owner_view["schema"] == "/v2/schemas/members"
    assert {m["member_id"]: m["status"] for m in owner_view["members"]} == {bob.project_id: "accepted",
                                                                           carol.project_id: "pending"}
    assert [m["member_id"] for m in client.get(url, headers=bob.headers).get_json()["members"]] == [bob.project_id]
    assert client.get(f"{url}/{bob.project_id}", headers=bob.headers).get_json()["status"] == "accepted"
    _glance_error(client.get(f"{url}/{carol.project_id}", headers=bob.headers), 404)
    # Rejected: out of the list, still reachable by ID (Glance: pending and rejected are functionally the same).
    client.put(f"{url}/{bob.project_id}", json={"status": "rejected"}, headers=bob.headers)
    assert "shared-img" not in _names(client, bob) and _bootable(bob, img["id"])
    assert _names(client, bob, "?member_status=rejected") == ["shared-img"]
    # Removed: gone for bob, nothing left to boot.
    assert client.delete(f"{url}/{bob.project_id}", headers=alice.headers).status_code == 204
    _glance_error(client.get(f"/image/v2/images/{img['id']}", headers=bob.headers), 404)
    assert not _bootable(bob, img["id"])
    _glance_error(client.delete(f"{url}/{bob.project_id}", headers=alice.headers), 404)
    # Deleting the image takes its members with it.
    assert client.delete(f"/image/v2/images/{img['id']}", headers=alice.headers).status_code == 204
    assert _names(client, carol, "?member_status=all") == []


def test_only_shared_images_have_members(client, projects):
    alice, bob, _ = projects
    private = _create(client, alice, name="p", visibility="private")
    _glance_error(client.post(f"/image/v2/images/{private['id']}/members", json={"member": bob.project_id},
                              headers=alice.headers), 403)
    _glance_error(client.get(f"/image/v2/images/{private['id']}/members", headers=alice.headers), 403)


def test_member_schemas(client, admin):
    member = client.get("/image/v2/schemas/member", headers=admin.headers).get_json()
    assert member["name"] == "member"
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    members = client.get("/image/v2/schemas/members", headers=admin.headers).get_json()
    assert members["properties"]["members"]["items"]["name"] == "member"


def test_deactivate_reactivate(client, admin, projects):
    alice, bob, _ = projects
    img = _create(client, admin, name="d", visibility="public")
    queued = _create(client, alice, name="q")
    url = f"/image/v2/images/{img['id']}/actions"
    # Not active yet: Glance refuses with 403.
    _glance_error(client.post(f"{url}/deactivate", headers=admin.headers), 403)
    assert _upload(client, admin, img["id"]).status_code == 204
    _glance_error(client.post(f"{url}/deactivate", headers=bob.headers), 403)  # not the owner
    assert client.post(f"{url}/deactivate", headers=admin.headers).status_code == 204
    assert client.post(f"{url}/deactivate", headers=admin.headers).status_code == 204  # no-op
    shown = client.get(f"/image/v2/images/{img['id']}", headers=bob.headers).get_json()
    assert shown["status"] == "deactivated"
    _glance_error(client.get(f"/image/v2/images/{img['id']}/file", headers=bob.headers), 403)
    assert client.get(f"/image/v2/images/{img['id']}/file", headers=admin.headers).data == DATA
    with read_session() as s, pytest.raises(ApiError) as exc:
        boot_request.image_for_boot(s, img["id"], _ctx(bob))
    assert (exc.value.code, exc.value.message) == (400, f"Image {img['id']} is not active.")
    _glance_error(client.post(f"{url}/bogus", headers=admin.headers), 404)
    assert client.post(f"{url}/reactivate", headers=admin.headers).status_code == 204
    assert client.post(f"{url}/reactivate", headers=admin.headers).status_code == 204
    assert client.get(f"/image/v2/images/{img['id']}/file", headers=bob.headers).data == DATA
    # The owner project's members may deactivate their own image (Glance's default rule).
    assert _upload(client, alice, queued["id"]).status_code == 204
    assert client.post(f"/image/v2/images/{queued['id']}/actions/deactivate",
                       headers=alice.headers).status_code == 204
    _glance_error(client.post(f"/image/v2/images/{queued['id']}/actions/reactivate", headers=bob.headers), 404)


def test_tags(client, admin, projects):
    alice, bob, _ = projects
    img = _create(client, alice, name="t", tags=["one"])
    one = _create(client, alice, name="u")
    url = f"/image/v2/images/{img['id']}/tags"
    assert client.put(f"{url}/two", headers=alice.headers).status_code == 204
    assert client.put(f"{url}/two", headers=alice.headers).status_code == 204  # idempotent
    assert client.get(f"/image/v2/images/{img['id']}", headers=alice.headers).get_json()["tags"] == ["one", "two"]
    assert _names(client, alice, "?tag=two") == ["t"]
    assert _names(client, alice, "?tag=one&tag=two") == ["t"]
    assert _names(client, alice, "?tag=three") == []
    assert client.delete(f"{url}/one", headers=alice.headers).status_code == 204
    _glance_error(client.delete(f"{url}/one", headers=alice.headers), 404)
    assert client.get(f"/image/v2/images/{img['id']}", headers=alice.headers).get_json()["tags"] == ["two"]
    _glance_error(client.put(f"{url}/x", headers=bob.headers), 404)
    for i in range(127):
        assert client.put(f"/image/v2/images/{one['id']}/tags/t{i}", headers=alice.headers).status_code == 204
    assert client.put(f"/image/v2/images/{one['id']}/tags/last", headers=alice.headers).status_code == 204
    _glance_error(client.put(f"/image/v2/images/{one['id']}/tags/over", headers=alice.headers), 413)
