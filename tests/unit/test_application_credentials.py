"""Application credentials: Keystone's create/list/show/delete under /v3/users/{id}/application_credentials, the
``application_credential`` auth method, the roles and project of its tokens, and their end with it."""
from __future__ import annotations

import datetime as dt

from tests.unit.conftest import issue


def _error(resp, code):
    assert resp.status_code == code, resp.get_data(as_text=True)
    err = resp.get_json()["error"]
    assert err["code"] == code and err["message"] and err["title"]
    return err["message"]


def _create(client, cred, **fields):
    return client.post(f"/identity/v3/users/{cred.user_id}/application_credentials",
                       json={"application_credential": {"name": "ci", **fields}}, headers=cred.headers)


def _auth(client, ref: dict, **extra):
    body = {"auth": {"identity": {"methods": ["application_credential"], "application_credential": ref}, **extra}}
    return client.post("/identity/v3/auth/tokens", json=body)


def _grant(client, admin, user_id, project_id, role):
    roles = {r["name"]: r["id"] for r in client.get("/identity/v3/roles", headers=admin.headers)
             .get_json()["roles"]}
    assert client.put(f"/identity/v3/projects/{project_id}/users/{user_id}/roles/{roles[role]}",
                      headers=admin.headers).status_code == 204


def test_create_shows_the_secret_once_and_stores_its_hash(client, make_user):
    member = make_user("ac-user", "ac-project", "member")
    resp = _create(client, member, description="for CI")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()["application_credential"]
    assert body["name"] == "ci" and body["description"] == "for CI" and body["project_id"] == member.project_id
    assert body["unrestricted"] is False and body["expires_at"] is None and body["access_rules"] == []
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]  # the token's roles by default
    also = _create(client, member, name="ci2", roles=[], access_rules=[]).get_json()["application_credential"]
    assert sorted(r["name"] for r in also["roles"]) == ["member", "reader"]  # the SDK sends empty lists
    assert len(body["secret"]) > 40
    assert body["links"]["self"].endswith(f"/users/{member.user_id}/application_credentials/{body['id']}")
    listed = client.get(f"/identity/v3/users/{member.user_id}/application_credentials",
                        headers=member.headers).get_json()["application_credentials"]
    assert [c["id"] for c in listed] == [body["id"], also["id"]] and "secret" not in listed[0]
    shown = client.get(f"/identity/v3/users/{member.user_id}/application_credentials/{body['id']}",
                       headers=member.headers).get_json()["application_credential"]
    assert "secret" not in shown and shown["roles"] == body["roles"]
    from core import db
    from core.models import ApplicationCredential
    with db.read_session() as s:
        stored = s.get(ApplicationCredential, body["id"]).secret_hash
    assert body["secret"] not in stored and stored.startswith("$2")
    _error(_create(client, member), 409)  # one name per user


def test_sign_in_by_id_or_name_carries_its_roles_and_project(client, admin, make_user):
    member = make_user("ac-signin", "ac-p1", "member")
    _grant(client, admin, member.user_id, member.project_id, "manager")
    body = _create(client, make_user("ac-signin", "ac-p1", "member"), secret="s3cret-value",
                   roles=[{"name": "reader"}]).get_json()["application_credential"]
    resp = _auth(client, {"id": body["id"], "secret": "s3cret-value"})
    assert resp.status_code == 201, resp.get_json()
    token = resp.get_json()["token"]
    assert token["methods"] == ["application_credential"]
    assert token["project"]["id"] == member.project_id
    assert [r["name"] for r in token["roles"]] == ["reader"]
    assert token["application_credential"] == {"id": body["id"], "name": "ci", "restricted": True}
    assert {s["type"] for s in token["catalog"]} == {"identity", "compute", "image", "placement", "network"}
    h = {"X-Auth-Token": resp.headers["X-Subject-Token"]}
    # A reader: reads servers, cannot create one.
    assert client.get("/v2.1/servers", headers=h).status_code == 200
    assert client.post("/v2.1/servers", json={"server": {"name": "x", "flavorRef": "1", "imageRef": "x",
                                                         "networks": "none"}}, headers=h).status_code == 403
    validated = client.get("/identity/v3/auth/tokens", headers={**h, "X-Subject-Token": h["X-Auth-Token"]})
    assert validated.get_json()["token"]["application_credential"]["id"] == body["id"]
    by_name = _auth(client, {"name": "ci", "secret": "s3cret-value",
                             "user": {"name": "ac-signin", "domain": {"id": "default"}}})
    assert by_name.status_code == 201
    _error(_auth(client, {"id": body["id"], "secret": "wrong"}), 401)
    _error(_auth(client, {"id": "nope", "secret": "s3cret-value"}), 401)
    _error(_auth(client, {"id": body["id"]}), 400)
    _error(_auth(client, {"id": body["id"], "secret": "s3cret-value"},
                 scope={"project": {"id": member.project_id}}), 401)  # no scope may be asked for
    # Its token cannot be traded for another one.
    _error(client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["token"], "token": {"id": h["X-Auth-Token"]}}}}), 403)


def test_roles_must_be_the_users(client, admin, make_user):
    member = make_user("ac-roles", "ac-p2", "member")
    _error(_create(client, member, roles=[{"name": "admin"}]), 400)
    _error(_create(client, member, roles=[{"name": "no-such-role"}]), 404)
    _error(_create(client, member, roles="member"), 400)
    _error(_create(client, member, expires_at="2001-01-01T00:00:00Z"), 400)
    _error(_create(client, member, expires_at="soon"), 400)
    _error(_create(client, member, access_rules=[{"path": "/v2.1/servers", "method": "GET",
                                                  "service": "compute"}]), 400)
    _error(_create(client, member, name=""), 400)
    assert client.get(f"/identity/v3/users/{member.user_id}/application_credentials",
                      headers=member.headers).get_json()["application_credentials"] == []
    # Another user's credentials: neither created nor read by a member; an admin reads them.
    other = make_user("ac-other", "ac-p2", "member")
    url = f"/identity/v3/users/{other.user_id}/application_credentials"
    _error(client.post(url, json={"application_credential": {"name": "x"}}, headers=member.headers), 403)
    _error(client.get(url, headers=member.headers), 403)
    _error(client.post(url, json={"application_credential": {"name": "x"}}, headers=admin.headers), 403)
    assert client.get(url, headers=admin.headers).status_code == 200


def test_deleting_or_expiry_ends_its_tokens(client, make_user, monkeypatch):
    member = make_user("ac-del", "ac-p3", "member")
    body = _create(client, member).get_json()["application_credential"]
    token = _auth(client, {"id": body["id"], "secret": body["secret"]}).headers["X-Subject-Token"]
    h = {"X-Auth-Token": token}
    assert client.get("/v2.1/servers", headers=h).status_code == 200
    # A restricted credential's token cannot manage credentials, not even its own.
    url = f"/identity/v3/users/{member.user_id}/application_credentials"
    assert "not allowed" in _error(client.post(url, json={"application_credential": {"name": "more"}},
                                               headers=h), 403)
    _error(client.delete(f"{url}/{body['id']}", headers=h), 403)
    assert client.delete(f"{url}/{body['id']}", headers=member.headers).status_code == 204
    assert client.get("/v2.1/servers", headers=h).status_code == 401
    _error(_auth(client, {"id": body["id"], "secret": body["secret"]}), 401)
    _error(client.delete(f"{url}/{body['id']}", headers=member.headers), 404)

    # An unrestricted one may create more; expiry bounds its tokens and its sign-in.
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = _create(client, member, name="free", unrestricted=True, expires_at=soon).get_json()[
        "application_credential"]
    assert body["unrestricted"] is True and body["expires_at"].startswith(soon[:16])
    resp = _auth(client, {"id": body["id"], "secret": body["secret"]})
    assert resp.get_json()["token"]["expires_at"][:16] == soon[:16]
    h = {"X-Auth-Token": resp.headers["X-Subject-Token"]}
    assert client.post(url, json={"application_credential": {"name": "child"}}, headers=h).status_code == 201
    from core import db
    from core.models import ApplicationCredential, Token
    with db.write_session() as s:
        s.get(ApplicationCredential, body["id"]).expires_at = dt.datetime(2001, 1, 1)
        for t in s.query(Token).filter(Token.app_cred_id == body["id"]):
            t.expires_at = dt.datetime(2001, 1, 1)
    _error(_auth(client, {"id": body["id"], "secret": body["secret"]}), 401)
    assert client.get("/v2.1/servers", headers=h).status_code == 401


def test_losing_the_role_ends_the_credentials_tokens(client, admin, make_user):
    member = make_user("ac-lose", "ac-p4", "member")
    body = _create(client, member).get_json()["application_credential"]
    token = _auth(client, {"id": body["id"], "secret": body["secret"]}).headers["X-Subject-Token"]
    roles = {r["name"]: r["id"] for r in client.get("/identity/v3/roles", headers=admin.headers)
             .get_json()["roles"]}
    assert client.delete(f"/identity/v3/projects/{member.project_id}/users/{member.user_id}/roles/"
                         f"{roles['member']}", headers=admin.headers).status_code == 204
    assert client.get("/v2.1/servers", headers={"X-Auth-Token": token}).status_code == 401
    _error(_auth(client, {"id": body["id"], "secret": body["secret"]}), 401)
    assert issue(client, "ac-lose", member.password, "ac-p4").status_code == 401


def test_a_user_id_that_is_not_a_string_is_a_400_not_a_500(client):
    """Found by Schemathesis: a list or object as the user's id reached the primary-key lookup (500)."""
    for bad in ([1, 2], {"x": 1}, 7):
        message = _error(_auth(client, {"name": "ci", "secret": "s", "user": {"id": bad}}), 400)
        assert "identity/password/user/id" in message or "user" in message
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": bad, "password": "x"}}}}}
        assert client.post("/identity/v3/auth/tokens", json=body).status_code == 400
