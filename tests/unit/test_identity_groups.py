"""Identity groups: CRUD, membership, roles granted to groups on projects (in tokens, in /v3/role_assignments with
and without ``effective``), and the default roles' implications."""
from __future__ import annotations

from tests.unit.conftest import PUBLIC_URL, issue


def _error(resp, code):
    assert resp.status_code == code, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    assert err["code"] == code and err["message"] and err["title"]
    return err["message"]


def _roles(client, admin) -> dict[str, str]:
    return {r["name"]: r["id"] for r in client.get("/identity/v3/roles", headers=admin.headers).get_json()["roles"]}


def test_group_crud(client, admin):
    h = admin.headers
    resp = client.post("/identity/v3/groups", json={"group": {"name": "ops", "description": "Operators",
                                                               "domain_id": "default"}}, headers=h)
    assert resp.status_code == 201
    g = resp.get_json()["group"]
    assert g == {"id": g["id"], "name": "ops", "domain_id": "default", "description": "Operators",
                 "links": {"self": f"{PUBLIC_URL}/identity/v3/groups/{g['id']}"}}
    _error(client.post("/identity/v3/groups", json={"group": {"name": "ops"}}, headers=h), 409)
    _error(client.post("/identity/v3/groups", json={"group": {}}, headers=h), 400)
    _error(client.post("/identity/v3/groups", json={"group": {"name": "x", "domain_id": "other"}}, headers=h), 404)
    assert [x["name"] for x in client.get("/identity/v3/groups", headers=h).get_json()["groups"]] == ["ops"]
    assert client.get("/identity/v3/groups?name=nope", headers=h).get_json()["groups"] == []
    resp = client.patch(f"/identity/v3/groups/{g['id']}", json={"group": {"name": "sre"}}, headers=h)
    assert resp.get_json()["group"]["name"] == "sre"
    assert client.get(f"/identity/v3/groups/{g['id']}", headers=h).get_json()["group"]["name"] == "sre"
    assert client.delete(f"/identity/v3/groups/{g['id']}", headers=h).status_code == 204
    _error(client.get(f"/identity/v3/groups/{g['id']}", headers=h), 404)
    _error(client.delete(f"/identity/v3/groups/{g['id']}", headers=h), 404)


def test_membership_and_group_roles_in_tokens(client, admin, make_user):
    h = admin.headers
    roles = _roles(client, admin)
    gid = client.post("/identity/v3/groups", json={"group": {"name": "devs"}}, headers=h).get_json()["group"]["id"]
    pid = client.post("/identity/v3/projects", json={"project": {"name": "gp"}}, headers=h).get_json()["project"]["id"]
    uid = client.post("/identity/v3/users", json={"user": {"name": "gu", "password": "pw-gu"}},
                      headers=h).get_json()["user"]["id"]
    member_url = f"/identity/v3/groups/{gid}/users/{uid}"
    assert client.head(member_url, headers=h).status_code == 404
    assert client.put(member_url, headers=h).status_code == 204
    assert client.put(member_url, headers=h).status_code == 204  # idempotent
    assert client.head(member_url, headers=h).status_code == 204
    _error(client.put(f"/identity/v3/groups/{gid}/users/nope", headers=h), 404)
    _error(client.put(f"/identity/v3/groups/nope/users/{uid}", headers=h), 404)
    assert [u["id"] for u in client.get(f"/identity/v3/groups/{gid}/users", headers=h).get_json()["users"]] == [uid]
    assert [g["id"] for g in client.get(f"/identity/v3/users/{uid}/groups", headers=h).get_json()["groups"]] == [gid]

    # No role yet: no token on the project.
    _error(issue(client, "gu", "pw-gu", "gp"), 401)
    grant = f"/identity/v3/projects/{pid}/groups/{gid}/roles/{roles['member']}"
    assert client.head(grant, headers=h).status_code == 404
    assert client.put(grant, headers=h).status_code == 204
    assert client.head(grant, headers=h).status_code == 204
    assert [r["name"] for r in client.get(f"/identity/v3/projects/{pid}/groups/{gid}/roles",
                                          headers=h).get_json()["roles"]] == ["member"]
    tok = issue(client, "gu", "pw-gu", "gp")
    assert tok.status_code == 201
    assert [r["name"] for r in tok.get_json()["token"]["roles"]] == ["member", "reader"]
    uh = {"X-Auth-Token": tok.headers["X-Subject-Token"]}
    assert [p["id"] for p in client.get("/identity/v3/auth/projects", headers=uh).get_json()["projects"]] == [pid]
    assert [p["id"] for p in client.get(f"/identity/v3/users/{uid}/projects", headers=uh).get_json()["projects"]] \
        == [pid]
    assert client.get(f"/identity/v3/users/{uid}/groups", headers=uh).status_code == 200  # its own groups
    assert client.get("/v2.1/servers", headers=uh).status_code == 200

    # Leaving the group takes the role away from the token at once.
    assert client.delete(member_url, headers=h).status_code == 204
    _error(client.delete(member_url, headers=h), 404)
    assert client.get("/v2.1/servers", headers=uh).status_code == 401
    assert client.put(member_url, headers=h).status_code == 204
    assert client.delete(grant, headers=h).status_code == 204
    _error(client.delete(grant, headers=h), 404)
    _error(issue(client, "gu", "pw-gu", "gp"), 401)


def test_role_assignments_with_groups_and_effective(client, admin):
    h = admin.headers
    roles = _roles(client, admin)
    gid = client.post("/identity/v3/groups", json={"group": {"name": "g"}}, headers=h).get_json()["group"]["id"]
    pid = client.post("/identity/v3/projects", json={"project": {"name": "rp"}}, headers=h).get_json()["project"]["id"]
    uid = client.post("/identity/v3/users", json={"user": {"name": "ru"}}, headers=h).get_json()["user"]["id"]
    client.put(f"/identity/v3/groups/{gid}/users/{uid}", headers=h)
    client.put(f"/identity/v3/projects/{pid}/groups/{gid}/roles/{roles['manager']}", headers=h)
    v3 = f"{PUBLIC_URL}/identity/v3"
    assignment = f"{v3}/projects/{pid}/groups/{gid}/roles/{roles['manager']}"
    listed = client.get(f"/identity/v3/role_assignments?scope.project.id={pid}", headers=h).get_json()
    assert listed["role_assignments"] == [{"role": {"id": roles["manager"]}, "scope": {"project": {"id": pid}},
                                           "group": {"id": gid}, "links": {"assignment": assignment}}]
    assert client.get(f"/identity/v3/role_assignments?group.id={gid}", headers=h).get_json()["role_assignments"] \
        == listed["role_assignments"]
    assert client.get(f"/identity/v3/role_assignments?user.id={uid}", headers=h).get_json()["role_assignments"] \
        == []
    effective = client.get(f"/identity/v3/role_assignments?user.id={uid}&effective&include_names",
                           headers=h).get_json()["role_assignments"]
    by_role = {a["role"]["name"]: a for a in effective}
    assert set(by_role) == {"manager", "member", "reader"}
    assert by_role["manager"]["links"] == {"assignment": assignment, "membership": f"{v3}/groups/{gid}/users/{uid}"}
    assert by_role["member"]["links"]["prior_role"] == f"{v3}/roles/{roles['manager']}/implies/{roles['member']}"
    assert by_role["reader"]["links"]["prior_role"] == f"{v3}/roles/{roles['member']}/implies/{roles['reader']}"
    rule = client.get(by_role["member"]["links"]["prior_role"].removeprefix(PUBLIC_URL), headers=h).get_json()
    assert rule["role_inference"]["prior_role"]["name"] == "manager"
    assert rule["role_inference"]["implies"]["name"] == "member"
    assert all(a["user"]["name"] == "ru" and a["scope"]["project"]["name"] == "rp" for a in effective)
    _error(client.get(f"/identity/v3/role_assignments?group.id={gid}&effective", headers=h), 400)


def test_default_roles_and_their_implications(client, admin, make_user):
    roles = _roles(client, admin)
    assert set(roles) == {"admin", "manager", "member", "reader", "service"}
    h = admin.headers
    rules = client.get("/identity/v3/role_inferences", headers=h).get_json()["role_inferences"]
    assert sorted((r["prior_role"]["name"], [i["name"] for i in r["implies"]]) for r in rules) == \
        [("admin", ["manager"]), ("manager", ["member"]), ("member", ["reader"])]
    implied = client.get(f"/identity/v3/roles/{roles['service']}/implies", headers=h).get_json()
    assert implied["role_inference"]["implies"] == []
    assert client.head(f"/identity/v3/roles/{roles['admin']}/implies/{roles['reader']}",
                       headers=h).status_code == 404  # only direct rules, as Keystone stores them
    manager = make_user("mgr", "mgr-project", "manager")
    tok = issue(client, "mgr", manager.password, "mgr-project").get_json()["token"]
    assert [r["name"] for r in tok["roles"]] == ["manager", "member", "reader"]
    # A manager is a member of its project (Nova's project_member_api), not an admin.
    assert client.get("/v2.1/servers", headers=manager.headers).status_code == 200
    _error_nova = client.get("/v2.1/os-hypervisors", headers=manager.headers)
    assert _error_nova.status_code == 403
    service = make_user("svc", "service", "service")
    tok = issue(client, "svc", service.password, "service").get_json()["token"]
    assert [r["name"] for r in tok["roles"]] == ["service"]  # implies nothing
    assert client.get("/v2.1/servers", headers=service.headers).status_code == 403
