"""/os-server-groups in-process: bodies per microversion, Nova's validation messages, policy and quota.

The conductor's RPC tasks run in-process here (same functions, no broker); the real processes are exercised by
tests/functional/test_server_groups.py.
"""
from __future__ import annotations

import pytest

from core.errors import ApiError


@pytest.fixture
def api(client, admin, make_user, monkeypatch):
    from tasks.messaging import celery_app, rpc

    celery_app.celery.loader.import_default_modules()  # registers the conductor tasks

    def inline_call(name, *args, **_kw):
        reply = celery_app.celery.tasks[name](*args)
        if "error" in reply:
            raise ApiError(int(reply["error"]["code"]), reply["error"]["message"])
        return reply["ok"]

    monkeypatch.setattr(rpc, "call", inline_call)
    return client, admin, make_user


def req(client, method: str, path: str, cred, version: str = "2.96", **kw):
    headers = {**cred.headers, "OpenStack-API-Version": f"compute {version}"}
    return getattr(client, method)(f"/v2.1{path}", headers=headers, **kw)


def create(client, cred, body: dict, version: str = "2.96"):
    return req(client, "post", "/os-server-groups", cred, version, json={"server_group": body})


def test_create_show_list_delete_per_microversion(api):
    client, admin, make_user = api
    alice = make_user("alice", "proj-a")
    r = create(client, alice, {"name": "web", "policy": "anti-affinity", "rules": {"max_server_per_host": "2"}})
    assert r.status_code == 200, r.get_json()
    group = r.get_json()["server_group"]
    assert group == {"id": group["id"], "name": "web", "policy": "anti-affinity", "rules": {"max_server_per_host": 2},
                     "members": [], "project_id": alice.project_id, "user_id": alice.user_id}
    old = req(client, "get", f"/os-server-groups/{group['id']}", alice, "2.1").get_json()["server_group"]
    assert old == {"id": group["id"], "name": "web", "policies": ["anti-affinity"], "metadata": {}, "members": []}
    v213 = req(client, "get", f"/os-server-groups/{group['id']}", alice, "2.13").get_json()["server_group"]
    assert set(v213) == {"id", "name", "policies", "metadata", "members", "project_id", "user_id"}
    r = create(client, alice, {"name": "db", "policies": ["affinity"]}, "2.1")
    assert r.status_code == 200 and r.get_json()["server_group"]["policies"] == ["affinity"]
    listed = req(client, "get", "/os-server-groups", alice).get_json()["server_groups"]
    assert [g["name"] for g in listed] == ["web", "db"]
    assert [g["name"] for g in req(client, "get", "/os-server-groups?limit=1&offset=1", alice)
            .get_json()["server_groups"]] == ["db"]
    assert req(client, "delete", f"/os-server-groups/{group['id']}", alice).status_code == 204
    r = req(client, "get", f"/os-server-groups/{group['id']}", alice)
    assert r.status_code == 404
    assert r.get_json()["itemNotFound"]["message"] == f"Instance group {group['id']} could not be found."


BAD_BODIES = [
    ("2.1", {"name": "x", "policies": ["soft-affinity"]},
     "Invalid input for field/attribute 0. Value: soft-affinity. 'soft-affinity' is not one of "
     "['anti-affinity', 'affinity']"),
    ("2.15", {"name": "x", "policies": ["bogus"]}, "'bogus' is not one of ['anti-affinity', 'affinity', "
                                                   "'soft-anti-affinity', 'soft-affinity']"),
    ("2.15", {"name": "x", "policies": ["affinity", "anti-affinity"]}, "is too long"),
    ("2.15", {"name": "x", "policies": []}, "[] should be non-empty"),
    ("2.15", {"name": "x", "policies": "affinity"}, "'affinity' is not of type 'array'"),
    ("2.15", {"name": "x"}, "'policies' is a required property"),
    ("2.15", {"name": "x", "policies": ["affinity"], "policy": "affinity"},
     "Additional properties are not allowed ('policy' was unexpected)"),
    ("2.64", {"name": "x", "policies": ["affinity"]}, "'policies' was unexpected"),
    ("2.64", {"name": "x", "policy": "bogus"}, "Invalid input for field/attribute policy. Value: bogus. 'bogus' "
                                               "is not one of"),
    ("2.64", {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}},
     "Only anti-affinity policy supports rules."),
    ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}},
     "0 is less than the minimum of 1"),
    ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": "foo"}},
     "'foo' does not match '^[0-9]*$'"),
    ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"unknown_key": "3"}},
     "Additional properties are not allowed ('unknown_key' was unexpected)"),
    ("2.64", {"policy": "affinity"}, "'name' is a required property"),
    ("2.64", {"name": "", "policy": "affinity"}, "Invalid input for field/attribute name"),
]


@pytest.mark.parametrize("version,body,message", BAD_BODIES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_BODIES)])
def test_bad_create_bodies_get_novas_400(api, version, body, message):
    client, admin, _ = api
    r = create(client, admin, body, version)
    assert r.status_code == 400, r.get_json()
    assert message in r.get_json()["badRequest"]["message"]
    assert req(client, "get", "/os-server-groups", admin).get_json()["server_groups"] == []


def test_policy_project_scope_and_all_projects(api):
    client, admin, make_user = api
    alice, bob = make_user("alice", "proj-a"), make_user("bob", "proj-b")
    reader = make_user("rita", "proj-a", role="reader")
    gid = create(client, alice, {"name": "a1", "policy": "affinity"}).get_json()["server_group"]["id"]
    assert create(client, bob, {"name": "b1", "policy": "affinity"}).status_code == 200
    # A reader may look but not create or delete.
    r = create(client, reader, {"name": "r1", "policy": "affinity"})
    assert r.status_code == 403 and "forbidden" in r.get_json()
    assert req(client, "delete", f"/os-server-groups/{gid}", reader).status_code == 403
    assert req(client, "get", f"/os-server-groups/{gid}", reader).status_code == 200
    # Another project's group does not exist for bob.
    assert req(client, "get", f"/os-server-groups/{gid}", bob).status_code == 404
    assert req(client, "delete", f"/os-server-groups/{gid}", bob).status_code == 404
    # all_projects: admins see every project's groups; others silently get their own (as Nova).
    assert [g["name"] for g in req(client, "get", "/os-server-groups?all_projects=True", bob)
            .get_json()["server_groups"]] == ["b1"]
    assert {g["name"] for g in req(client, "get", "/os-server-groups?all_projects=True", admin)
            .get_json()["server_groups"]} == {"a1", "b1"}
    assert req(client, "get", "/os-server-groups", admin).get_json()["server_groups"] == []
    assert req(client, "get", f"/os-server-groups/{gid}", admin).status_code == 200
    # 2.75 rejects unknown query parameters; earlier versions ignore them.
    assert req(client, "get", "/os-server-groups?foo=1", bob, "2.75").status_code == 400
    assert req(client, "get", "/os-server-groups?foo=1", bob, "2.74").status_code == 200
    assert req(client, "get", "/os-server-groups?limit=-1", bob).status_code == 400
    assert req(client, "delete", f"/os-server-groups/{gid}", admin).status_code == 204


def test_server_groups_quota(api, monkeypatch):
    client, _, make_user = api
    monkeypatch.setenv("STRATUS_QUOTA_SERVER_GROUPS", "2")
    from core import settings
    settings.get_settings.cache_clear()
    alice = make_user("alice", "proj-a")
    for name in ("g1", "g2"):
        assert create(client, alice, {"name": name, "policy": "affinity"}).status_code == 200
    r = create(client, alice, {"name": "g3", "policy": "affinity"})
    assert r.status_code == 403
    assert r.get_json()["forbidden"]["message"] == "Quota exceeded, too many server groups."
    limits = req(client, "get", "/limits", alice).get_json()["limits"]["absolute"]
    assert limits["maxServerGroups"] == 2 and limits["totalServerGroupsUsed"] == 2
