"""System-scoped tokens (Keystone's ``scope: {system: {all: true}}``): who may have one, what it carries, the
system role assignment API, and the policies that accept it (Keystone's) or refuse it (Nova's and Glance's rules
are all project-scoped: 403)."""
from __future__ import annotations

from tests.unit.conftest import ADMIN_PASSWORD, password_auth

TOKENS = "/identity/v3/auth/tokens"


def system_token(client, user: str, password: str):
    body = password_auth(user, password)
    body["auth"]["scope"] = {"system": {"all": True}}
    return client.post(TOKENS, json=body)


def test_bootstrap_admin_gets_a_system_token_with_roles_and_catalog(client, admin):
    resp = system_token(client, "admin", ADMIN_PASSWORD)
    assert resp.status_code == 201, resp.get_json()
    token = resp.get_json()["token"]
    assert token["system"] == {"all": True} and "project" not in token
    # Keystone expands implied roles for system tokens too (admin => manager => member => reader)
    assert [r["name"] for r in token["roles"]] == ["admin", "manager", "member", "reader"]
    assert {s["type"] for s in token["catalog"]} == {"identity", "compute", "image", "placement", "network"}
    headers = {"X-Auth-Token": resp.headers["X-Subject-Token"]}
    validated = client.get(TOKENS, headers={**headers, "X-Subject-Token": resp.headers["X-Subject-Token"]})
    assert validated.status_code == 200 and validated.get_json()["token"]["system"] == {"all": True}
    assert client.get("/identity/v3/auth/catalog", headers=headers).status_code == 200
    assert client.get("/identity/v3/auth/system", headers=headers).get_json()["system"] == [{"all": True}]
    listed = client.get("/identity/v3/role_assignments?scope.system=all&include_names=true", headers=headers)
    assert [(a["user"]["name"], a["role"]["name"], a["scope"]) for a in listed.get_json()["role_assignments"]] \
        == [("admin", "admin", {"system": {"all": True}})]
    assert listed.get_json()["role_assignments"][0]["links"]["assignment"].endswith(
        f"/v3/system/users/{admin.user_id}/roles/{token['roles'][0]['id']}")


def test_a_user_without_a_system_role_is_refused(client, make_user):
    alice = make_user("alice", "proj-a", "admin")  # admin on a project is not a role on the system
    resp = system_token(client, "alice", alice.password)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["message"] == f"User {alice.user_id} has no access to the system"
    assert client.get("/identity/v3/auth/system", headers=alice.headers).get_json()["system"] == []
    body = password_auth("alice", alice.password)
    body["auth"]["scope"] = {"system": {"all": True}, "project": {"id": alice.project_id}}
    assert client.post(TOKENS, json=body).status_code == 400


def test_system_admin_passes_keystones_admin_rules_and_nova_glance_refuse_it(client, admin):
    headers = {"X-Auth-Token": system_token(client, "admin", ADMIN_PASSWORD).headers["X-Subject-Token"]}
    assert client.get("/identity/v3/users", headers=headers).status_code == 200
    created = client.post("/identity/v3/projects", headers=headers, json={"project": {"name": "by-system"}})
    assert created.status_code == 201
    assert client.post("/identity/v3/users", headers=headers, json={"user": {"name": "u1"}}).status_code == 201
    # Nova and Glance: every rule is project-scoped; a system-scoped token gets 403 whatever its roles.
    for method, url in (("GET", "/v2.1/os-services"), ("GET", "/v2.1/os-hypervisors"),
                        ("GET", "/v2.1/servers/detail?all_tenants=1"), ("POST", "/v2.1/servers"),
                        ("GET", "/image/v2/images")):
        resp = client.open(url, method=method, headers={**headers, "Accept": "application/json"},
                           json={"server": {}} if method == "POST" else None)
        assert resp.status_code == 403, (url, resp.get_data(as_text=True))
    assert "forbidden" in client.get("/v2.1/os-services", headers=headers).get_json()
    assert "You are not authorized to complete get_images action." in client.get(
        "/image/v2/images", headers=headers).get_data(as_text=True)  # Glance's Forbidden
    # The same admin's project-scoped token is still an admin there.
    assert client.get("/v2.1/os-services", headers=admin.headers).status_code == 200


def test_system_role_assignments_api(client, admin, make_user):
    bob = make_user("bob", "proj-b", "member")
    roles = {r["name"]: r["id"] for r in client.get("/identity/v3/roles", headers=admin.headers).get_json()["roles"]}
    url = f"/identity/v3/system/users/{bob.user_id}/roles/{roles['reader']}"
    assert client.get(url, headers=admin.headers).status_code == 404
    assert client.put(url, headers=bob.headers).status_code == 403  # only an admin grants
    assert client.put(url, headers=admin.headers).status_code == 204
    assert client.head(url, headers=admin.headers).status_code == 204
    listed = client.get(f"/identity/v3/system/users/{bob.user_id}/roles", headers=bob.headers).get_json()
    assert [r["name"] for r in listed["roles"]] == ["reader"]
    token = system_token(client, "bob", bob.password)
    assert token.status_code == 201 and [r["name"] for r in token.get_json()["token"]["roles"]] == ["reader"]
    reader = {"X-Auth-Token": token.headers["X-Subject-Token"]}
    # Keystone's ADMIN_OR_SYSTEM_READER: a system reader reads, does not write.
    assert client.get("/identity/v3/users", headers=reader).status_code == 200
    assert client.get("/identity/v3/role_assignments", headers=reader).status_code == 200
    assert client.get(f"/identity/v3/projects/{admin.project_id}", headers=reader).status_code == 200
    assert client.post("/identity/v3/users", headers=reader, json={"user": {"name": "u2"}}).status_code == 403
    assert client.get("/identity/v3/users", headers=bob.headers).status_code == 403  # a project member does not
    assert client.delete(url, headers=admin.headers).status_code == 204
    assert client.delete(url, headers=admin.headers).status_code == 404
    # A system token whose user no longer holds a role on the system is no longer valid (Keystone).
    assert client.get("/identity/v3/users", headers=reader).status_code == 401


def test_system_member_token_carries_implied_roles_and_effective_assignments_show_them(client, admin, make_user):
    carol = make_user("carol", "proj-c", "member")
    roles = {r["name"]: r["id"] for r in client.get("/identity/v3/roles", headers=admin.headers).get_json()["roles"]}
    url = f"/identity/v3/system/users/{carol.user_id}/roles/{roles['member']}"
    assert client.put(url, headers=admin.headers).status_code == 204
    token = system_token(client, "carol", carol.password)
    assert [r["name"] for r in token.get_json()["token"]["roles"]] == ["member", "reader"]
    # The system reader rule holds through the implied reader role; the request context carries both.
    assert client.get("/identity/v3/users", headers={"X-Auth-Token": token.headers["X-Subject-Token"]}
                      ).status_code == 200
    listed = client.get(f"/identity/v3/role_assignments?user.id={carol.user_id}&scope.system=all&effective=true",
                        headers=admin.headers).get_json()["role_assignments"]
    assert sorted((a["role"]["id"], "prior_role" in a["links"]) for a in listed) == sorted(
        [(roles["member"], False), (roles["reader"], True)])
    assert all(a["scope"] == {"system": {"all": True}} for a in listed)
    # Her project assignments are still listed apart from the system's.
    project_rows = client.get(f"/identity/v3/role_assignments?user.id={carol.user_id}&scope.project.id="
                              f"{carol.project_id}", headers=admin.headers).get_json()["role_assignments"]
    assert [a["scope"] for a in project_rows] == [{"project": {"id": carol.project_id}}]
