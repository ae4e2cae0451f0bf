"""Identity API v3 subset: discovery, tokens, RBAC, CRUD, role assignments, catalog."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.identity import service
from core import db
from core.crypto import token_hash
from core.models import Token, User
from tests.unit.conftest import ADMIN_PASSWORD, PUBLIC_URL, issue, password_auth


def _keystone_error(resp, code):
    assert resp.status_code == code, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    assert err["code"] == code and err["message"] and err["title"]


# --- discovery --------------------------------------------------------------------------------------------------

def test_version_discovery_is_public(client):
    resp = client.get("/identity")
    assert resp.status_code == 300
    (v3,) = resp.get_json()["versions"]["values"]
    assert v3["id"].startswith("v3.") and v3["status"] == "stable"
    assert v3["links"][0]["href"] == f"{PUBLIC_URL}/identity/v3/"
    assert client.get("/identity/").status_code == 300
    for path in ("/identity/v3", "/identity/v3/"):
        doc = client.get(path)
        assert doc.status_code == 200
        version = doc.get_json()["version"]
        assert version["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"


def test_other_routes_need_a_token(client, admin):
    _keystone_error(client.get("/identity/v3/projects"), 401)
    _keystone_error(client.get("/identity/v3/projects", headers={"X-Auth-Token": "bogus"}), 401)


# --- tokens -----------------------------------------------------------------------------------------------------

def test_issue_token_password_project_scope(client, admin):
    resp = issue(client, "admin", ADMIN_PASSWORD, "admin")
    assert resp.status_code == 201
    token = resp.headers["X-Subject-Token"]
    body = resp.get_json()["token"]
    assert body["methods"] == ["password"]
    assert body["user"] == {"id": admin.user_id, "name": "admin", "domain": {"id": "default", "name": "Default"},
                            "password_expires_at": None}
    assert body["project"] == {"id": admin.project_id, "name": "admin",
                               "domain": {"id": "default", "name": "Default"}}
    assert [r["name"] for r in body["roles"]] == ["admin", "manager", "member", "reader"]  # implied, as Keystone
    assert body["expires_at"].endswith("Z") and body["issued_at"].endswith("Z")
    expires = dt.datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    issued = dt.datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs((expires - issued).total_seconds() - 3600) < 2
    assert len(body["audit_ids"]) == 1
    # Only the hash of the token is stored.
    with db.read_session() as s:
        rows = list(s.scalars(select(Token)))
        assert token_hash(token) in {r.id_hash for r in rows}
        assert all(token not in (r.id_hash, r.audit_id) for r in rows)


def test_token_string_never_stored_in_db_files(client, admin, stratus_env):
    token = issue(client, "admin", ADMIN_PASSWORD, "admin").headers["X-Subject-Token"]
    from core.db import get_engine, _write_engine
    get_engine().dispose()
    _write_engine().dispose()
    data = b"".join(p.read_bytes() for p in stratus_env.glob("stratus.sqlite*"))
    assert token_hash(token).encode() in data
    assert token.encode() not in data


def test_catalog_shape(client, admin):
    body = issue(client, "admin", ADMIN_PASSWORD, "admin").get_json()["token"]
    catalog = {svc["type"]: svc for svc in body["catalog"]}
    assert set(catalog) == {"identity", "compute", "image", "placement", "network"}
    urls = {"identity": f"{PUBLIC_URL}/identity", "compute": f"{PUBLIC_URL}/v2.1", "image": f"{PUBLIC_URL}/image",
            "placement": f"{PUBLIC_URL}/placement", "network": f"{PUBLIC_URL}/networking"}
    for stype, svc in catalog.items():
        assert svc["id"] and svc["name"]
        assert sorted(e["interface"] for e in svc["endpoints"]) == ["admin", "internal", "public"]
        for ep in svc["endpoints"]:
            assert ep["url"] == urls[stype] and ep["region"] == "RegionOne" and ep["region_id"] == "RegionOne"
            assert ep["id"]
    resp = client.get("/identity/v3/auth/catalog", headers=admin.headers)
    assert resp.status_code == 200 and resp.get_json()["catalog"] == body["catalog"]
    nocat = client.post("/identity/v3/auth/tokens?nocatalog", json=password_auth("admin", ADMIN_PASSWORD, "admin"))
    assert "catalog" not in nocat.get_json()["token"]


def test_issue_by_ids_and_domain_id(client, admin):
    resp = client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": admin.user_id,
                                                                     "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"id": admin.project_id}}}})
    assert resp.status_code == 201
    assert resp.get_json()["token"]["project"]["id"] == admin.project_id
    resp = client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert resp.status_code == 201
    other = password_auth("admin", ADMIN_PASSWORD, "admin")
    other["auth"]["identity"]["password"]["user"]["domain"] = {"name": "Other"}
    _keystone_error(client.post("/identity/v3/auth/tokens", json=other), 401)


def test_wrong_password_unknown_user_disabled_user(client, admin, make_user):
    _keystone_error(issue(client, "admin", "wrong", "admin"), 401)
    _keystone_error(issue(client, "nobody", "wrong", "admin"), 401)
    bob = make_user("bob", "p-bob")
    with db.write_session() as s:
        s.execute(update(User).where(User.id == bob.user_id).values(enabled=False))
    _keystone_error(issue(client, "bob", bob.password, "p-bob"), 401)
    # ... and its existing token stops working.
    _keystone_error(client.get("/identity/v3/auth/projects", headers=bob.headers), 401)


def test_malformed_auth_is_400(client, admin):
    _keystone_error(client.post("/identity/v3/auth/tokens", json={"nope": 1}), 400)
    _keystone_error(client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {}}}), 400)


def test_project_scope_requires_a_role(client, admin, make_user):
    bob = make_user("bob", "p-bob")
    _keystone_error(issue(client, "bob", bob.password, "admin"), 401)
    _keystone_error(issue(client, "bob", bob.password, "no-such-project"), 401)


def test_unscoped_and_default_project(client, admin, make_user):
    bob = make_user("bob", "p-bob")
    body = issue(client, "bob", bob.password).get_json()["token"]
    assert "project" not in body and "catalog" not in body
    explicit = password_auth("bob", bob.password)
    explicit["auth"]["scope"] = "unscoped"
    assert "project" not in client.post("/identity/v3/auth/tokens", json=explicit).get_json()["token"]
    with db.write_session() as s:
        service.ensure_user(s, "bob", bob.password, default_project_id=bob.project_id)
    body = issue(client, "bob", bob.password).get_json()["token"]
    assert body["project"]["id"] == bob.project_id and body["roles"][0]["name"] == "member"


def test_rescope_with_token_method(client, admin, make_user):
    bob = make_user("bob", "p-bob")
    unscoped = issue(client, "bob", bob.password)
    parent_expiry = unscoped.get_json()["token"]["expires_at"]
    resp = client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["token"], "token": {"id": unscoped.headers["X-Subject-Token"]}},
        "scope": {"project": {"name": "p-bob", "domain": {"name": "Default"}}}}})
    assert resp.status_code == 201
    body = resp.get_json()["token"]
    assert body["methods"] == ["token", "password"]
    assert body["project"]["id"] == bob.project_id
    assert body["expires_at"] <= parent_expiry
    bad = client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["token"], "token": {"id": "not-a-token"}}}})
    _keystone_error(bad, 401)


def test_validate_and_revoke(client, admin, make_user):
    bob = make_user("bob", "p-bob")
    # The subject may validate its own token; admin may validate anyone's.
    for caller in (bob, admin):
        resp = client.get("/identity/v3/auth/tokens", headers={**caller.headers, "X-Subject-Token": bob.token})
        assert resp.status_code == 200
        assert resp.headers["X-Subject-Token"] == bob.token
        assert resp.get_json()["token"]["user"]["id"] == bob.user_id
    head = client.head("/identity/v3/auth/tokens", headers={**admin.headers, "X-Subject-Token": bob.token})
    assert head.status_code == 200
    # Another non-admin may not.
    carol = make_user("carol", "p-carol")
    _keystone_error(client.get("/identity/v3/auth/tokens",
                               headers={**carol.headers, "X-Subject-Token": bob.token}), 403)
    _keystone_error(client.get("/identity/v3/auth/tokens",
                               headers={**admin.headers, "X-Subject-Token": "invalid"}), 404)
    assert client.head("/identity/v3/auth/tokens",
                       headers={**admin.headers, "X-Subject-Token": "invalid"}).status_code == 404
    # Revoke.
    resp = client.delete("/identity/v3/auth/tokens", headers={**bob.headers, "X-Subject-Token": bob.token})
    assert resp.status_code == 204
    _keystone_error(client.get("/identity/v3/auth/projects", headers=bob.headers), 401)
    _keystone_error(client.get("/identity/v3/auth/tokens",
                               headers={**admin.headers, "X-Subject-Token": bob.token}), 404)


def test_expired_token_rejected(client, admin, make_user):
    bob = make_user("bob", "p-bob")
    assert client.get("/identity/v3/auth/projects", headers=bob.headers).status_code == 200
    with db.write_session() as s:
        s.execute(update(Token).where(Token.id_hash == token_hash(bob.token))
                  .values(expires_at=dt.datetime(2000, 1, 1)))
    _keystone_error(client.get("/identity/v3/auth/projects", headers=bob.headers), 401)
    _keystone_error(client.get("/identity/v3/auth/tokens",
                               headers={**admin.headers, "X-Subject-Token": bob.token}), 404)


# --- RBAC -------------------------------------------------------------------------------------------------------

def test_reader_member_admin(client, admin, make_user):
    reader = make_user("rita", "p-shared", "reader")
    member = make_user("mike", "p-shared", "member")
    other = make_user("olga", "p-other", "member")
    for cred in (reader, member):
        _keystone_error(client.get("/identity/v3/projects", headers=cred.headers), 403)
        _keystone_error(client.post("/identity/v3/projects", json={"project": {"name": "x"}},
                                    headers=cred.headers), 403)
        _keystone_error(client.get("/identity/v3/users", headers=cred.headers), 403)
        # Own project, own user, own projects list: allowed.
        assert client.get(f"/identity/v3/projects/{cred.project_id}", headers=cred.headers).status_code == 200
        assert client.get(f"/identity/v3/users/{cred.user_id}", headers=cred.headers).status_code == 200
        own = client.get(f"/identity/v3/users/{cred.user_id}/projects", headers=cred.headers).get_json()
        assert [p["name"] for p in own["projects"]] == ["p-shared"]
        # Someone else's project or user: forbidden.
        _keystone_error(client.get(f"/identity/v3/projects/{other.project_id}", headers=cred.headers), 403)
        _keystone_error(client.get(f"/identity/v3/users/{other.user_id}", headers=cred.headers), 403)
        _keystone_error(client.put(f"/identity/v3/projects/{cred.project_id}/users/{cred.user_id}/roles/x",
                                   headers=cred.headers), 403)
    mine = client.get("/identity/v3/auth/projects", headers=member.headers).get_json()["projects"]
    assert [p["id"] for p in mine] == [member.project_id]
    listed = client.get(f"/identity/v3/role_assignments?user.id={member.user_id}", headers=member.headers)
    assert listed.status_code == 200 and len(listed.get_json()["role_assignments"]) == 1
    _keystone_error(client.get("/identity/v3/role_assignments", headers=member.headers), 403)
    # Admin reads anything.
    assert client.get(f"/identity/v3/projects/{other.project_id}", headers=admin.headers).status_code == 200


# --- CRUD ---------------------------------------------------------------------------------------------------------

def test_project_crud(client, admin):
    h = admin.headers
    resp = client.post("/identity/v3/projects", json={"project": {"name": "p2", "description": "two"}}, headers=h)
    assert resp.status_code == 201
    p = resp.get_json()["project"]
    assert p["name"] == "p2" and p["domain_id"] == "default" and p["enabled"] is True and p["description"] == "two"
    assert p["links"]["self"] == f"{PUBLIC_URL}/identity/v3/projects/{p['id']}"
    _keystone_error(client.post("/identity/v3/projects", json={"project": {"name": "p2"}}, headers=h), 409)
    _keystone_error(client.post("/identity/v3/projects", json={"project": {}}, headers=h), 400)
    _keystone_error(client.post("/identity/v3/projects", json={"project": {"name": "x", "domain_id": "nope"}},
                                headers=h), 404)
    names = [x["name"] for x in client.get("/identity/v3/projects", headers=h).get_json()["projects"]]
    assert "p2" in names and "admin" in names
    only = client.get("/identity/v3/projects?name=p2", headers=h).get_json()["projects"]
    assert [x["id"] for x in only] == [p["id"]]
    resp = client.patch(f"/identity/v3/projects/{p['id']}", json={"project": {"name": "p2b", "enabled": False}},
                        headers=h)
    assert resp.status_code == 200 and resp.get_json()["project"]["name"] == "p2b"
    assert resp.get_json()["project"]["enabled"] is False
    disabled = client.get("/identity/v3/projects?enabled=false", headers=h).get_json()["projects"]
    assert [x["name"] for x in disabled] == ["p2b"]
    assert client.get(f"/identity/v3/projects/{p['id']}", headers=h).get_json()["project"]["name"] == "p2b"
    assert client.delete(f"/identity/v3/projects/{p['id']}", headers=h).status_code == 204
    _keystone_error(client.get(f"/identity/v3/projects/{p['id']}", headers=h), 404)
    _keystone_error(client.delete(f"/identity/v3/projects/{p['id']}", headers=h), 404)


def test_user_crud_and_password(client, admin):
    h = admin.headers
    resp = client.post("/identity/v3/users", json={"user": {"name": "u2", "password": "pw1", "email": "u2@x"}},
                       headers=h)
    assert resp.status_code == 201
    u = resp.get_json()["user"]
    assert "password" not in u and u["email"] == "u2@x" and u["domain_id"] == "default"
    with db.read_session() as s:
        stored = s.get(User, u["id"]).password_hash
    assert stored.startswith("$2") and "pw1" not in stored
    _keystone_error(client.post("/identity/v3/users", json={"user": {"name": "u2"}}, headers=h), 409)
    assert [x["id"] for x in client.get("/identity/v3/users?name=u2", headers=h).get_json()["users"]] == [u["id"]]
    # No role yet: unscoped token works, project scope doesn't.
    tok = issue(client, "u2", "pw1")
    assert tok.status_code == 201
    old = tok.headers["X-Subject-Token"]
    resp = client.patch(f"/identity/v3/users/{u['id']}", json={"user": {"password": "pw2", "description": "d"}},
                        headers=h)
    assert resp.status_code == 200 and resp.get_json()["user"]["description"] == "d"
    _keystone_error(issue(client, "u2", "pw1"), 401)
    assert issue(client, "u2", "pw2").status_code == 201
    # A password change revokes existing tokens.
    _keystone_error(client.get(f"/identity/v3/users/{u['id']}", headers={"X-Auth-Token": old}), 401)
    # Self-service password change.
    new = issue(client, "u2", "pw2").headers["X-Subject-Token"]
    resp = client.post(f"/identity/v3/users/{u['id']}/password", headers={"X-Auth-Token": new},
                       json={"user": {"password": "pw3", "original_password": "wrong"}})
    _keystone_error(resp, 401)
    resp = client.post(f"/identity/v3/users/{u['id']}/password", headers={"X-Auth-Token": new},
                       json={"user": {"password": "pw3", "original_password": "pw2"}})
    assert resp.status_code == 204
    assert issue(client, "u2", "pw3").status_code == 201
    assert client.delete(f"/identity/v3/users/{u['id']}", headers=h).status_code == 204
    _keystone_error(client.get(f"/identity/v3/users/{u['id']}", headers=h), 404)
    _keystone_error(issue(client, "u2", "pw3"), 401)


def test_role_crud(client, admin):
    h = admin.headers
    resp = client.post("/identity/v3/roles", json={"role": {"name": "operator"}}, headers=h)
    assert resp.status_code == 201
    r = resp.get_json()["role"]
    _keystone_error(client.post("/identity/v3/roles", json={"role": {"name": "operator"}}, headers=h), 409)
    names = [x["name"] for x in client.get("/identity/v3/roles", headers=h).get_json()["roles"]]
    assert names == sorted(["admin", "manager", "member", "reader", "service", "operator"])
    assert client.get("/identity/v3/roles?name=operator", headers=h).get_json()["roles"][0]["id"] == r["id"]
    resp = client.patch(f"/identity/v3/roles/{r['id']}", json={"role": {"name": "op"}}, headers=h)
    assert resp.get_json()["role"]["name"] == "op"
    assert client.get(f"/identity/v3/roles/{r['id']}", headers=h).get_json()["role"]["name"] == "op"
    assert client.delete(f"/identity/v3/roles/{r['id']}", headers=h).status_code == 204
    _keystone_error(client.get(f"/identity/v3/roles/{r['id']}", headers=h), 404)


def test_domains_read_only(client, admin):
    h = admin.headers
    doms = client.get("/identity/v3/domains", headers=h).get_json()["domains"]
    assert [d["id"] for d in doms] == ["default"]
    assert client.get("/identity/v3/domains?name=Default", headers=h).get_json()["domains"][0]["name"] == "Default"
    assert client.get("/identity/v3/domains?name=Other", headers=h).get_json()["domains"] == []
    assert client.get("/identity/v3/domains/default", headers=h).get_json()["domain"]["name"] == "Default"
    _keystone_error(client.get("/identity/v3/domains/other", headers=h), 404)
    assert client.post("/identity/v3/domains", json={"domain": {"name": "x"}}, headers=h).status_code == 405


def test_role_assignments(client, admin):
    h = admin.headers
    pid = client.post("/identity/v3/projects", json={"project": {"name": "p2"}}, headers=h).get_json()["project"]["id"]
    uid = client.post("/identity/v3/users", json={"user": {"name": "u2", "password": "x"}},
                      headers=h).get_json()["user"]["id"]
    roles = {r["name"]: r["id"] for r in client.get("/identity/v3/roles", headers=h).get_json()["roles"]}
    url = f"/identity/v3/projects/{pid}/users/{uid}/roles/{roles['member']}"
    assert client.head(url, headers=h).status_code == 404
    _keystone_error(issue(client, "u2", "x", "p2"), 401)
    assert client.put(url, headers=h).status_code == 204
    assert client.put(url, headers=h).status_code == 204  # idempotent
    assert client.head(url, headers=h).status_code == 204
    _keystone_error(client.put(f"/identity/v3/projects/{pid}/users/{uid}/roles/nope", headers=h), 404)
    _keystone_error(client.put(f"/identity/v3/projects/nope/users/{uid}/roles/{roles['member']}", headers=h), 404)
    tok = issue(client, "u2", "x", "p2")
    assert tok.status_code == 201 and [r["name"] for r in tok.get_json()["token"]["roles"]] == ["member", "reader"]
    listed = client.get(f"/identity/v3/projects/{pid}/users/{uid}/roles", headers=h).get_json()["roles"]
    assert [r["name"] for r in listed] == ["member"]
    ra = client.get(f"/identity/v3/role_assignments?user.id={uid}", headers=h).get_json()["role_assignments"]
    assert ra == [{"role": {"id": roles["member"]}, "scope": {"project": {"id": pid}}, "user": {"id": uid},
                   "links": {"assignment": f"{PUBLIC_URL}{url}"}}]
    by_project = client.get(f"/identity/v3/role_assignments?scope.project.id={admin.project_id}&include_names=1",
                            headers=h).get_json()["role_assignments"]
    assert by_project == [{
        "role": {"id": roles["admin"], "name": "admin"},
        "scope": {"project": {"id": admin.project_id, "name": "admin",
                              "domain": {"id": "default", "name": "Default"}}},
        "user": {"id": admin.user_id, "name": "admin", "domain": {"id": "default", "name": "Default"}},
        "links": {"assignment": f"{PUBLIC_URL}/identity/v3/projects/{admin.project_id}/users/{admin.user_id}"
                                f"/roles/{roles['admin']}"}}]
    everything = client.get("/identity/v3/role_assignments", headers=h).get_json()["role_assignments"]
    assert len(everything) == 3  # the two on projects, and the bootstrap admin's on the system
    assert [a["scope"] for a in everything].count({"system": {"all": True}}) == 1
    assert client.get("/identity/v3/role_assignments?group.id=x", headers=h).get_json()["role_assignments"] == []
    user_projects = client.get(f"/identity/v3/users/{uid}/projects", headers=h).get_json()["projects"]
    assert [p["id"] for p in user_projects] == [pid]
    assert client.delete(url, headers=h).status_code == 204
    _keystone_error(client.delete(url, headers=h), 404)
    _keystone_error(issue(client, "u2", "x", "p2"), 401)


# --- bootstrap helpers ------------------------------------------------------------------------------------------

def test_service_helpers_are_idempotent(stratus_env):
    with db.write_session() as s:
        r1 = service.ensure_role(s, "member")
        p1 = service.ensure_project(s, "demo", "d")
        u1 = service.ensure_user(s, "demo", "one", default_project_id=p1.id)
        service.grant(s, u1.id, p1.id, r1.id)
        ids = (r1.id, p1.id, u1.id)
    with db.write_session() as s:
        r2 = service.ensure_role(s, "member")
        p2 = service.ensure_project(s, "demo")
        u2 = service.ensure_user(s, "demo", "two")
        service.grant(s, u2.id, p2.id, r2.id)
        assert (r2.id, p2.id, u2.id) == ids
        assert u2.default_project_id == p1.id
        assert service.check_password("two", u2.password_hash)
        assert not service.check_password("one", u2.password_hash)
    assert service.check_password("é" * 100, service.hash_password("é" * 100))  # > 72 bytes
    assert not service.check_password("x", None)


def test_password_hash_cost_is_a_setting_and_old_hashes_keep_theirs(stratus_env, monkeypatch):
    from core import db
    from app.identity import service
    from core.settings import load_settings
    cheap = service.hash_password("pw")
    assert cheap.startswith("$2b$04$")  # the unit tests' cost
    monkeypatch.setenv("STRATUS_PASSWORD_HASH_ROUNDS", "5")
    db.reset()
    dearer = service.hash_password("pw")
    assert dearer.startswith("$2b$05$")
    assert service.check_password("pw", cheap) and service.check_password("pw", dearer)
    for bad in ("3", "32"):
        with pytest.raises(ValueError, match="password_hash_rounds must be 4 to 31"):
            load_settings({"STRATUS_PASSWORD_HASH_ROUNDS": bad})
    assert load_settings({}).password_hash_rounds == 12
