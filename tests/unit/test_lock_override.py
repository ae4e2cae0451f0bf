"""Nova's lock ownership: a lock records ``owner`` or ``admin``; unlocking another side's lock needs
os_compute_api:os-lock-server:unlock:unlock_override (admin by default)."""
from __future__ import annotations

import json

from sqlalchemy import select

from tests.unit.inprocess import inprocess_conductor, world  # noqa: F401 (fixtures)

V = {"OpenStack-API-Version": "compute 2.73"}


def _locked(uuid: str) -> tuple:
    from core.db import read_session
    from core.models import Instance
    with read_session() as s:
        inst = s.scalars(select(Instance).where(Instance.uuid == uuid)).one()
        return inst.locked, inst.locked_by, inst.locked_reason


def _act(client, cred, server_id: str, body: dict):
    return client.post(f"/v2.1/servers/{server_id}/action", json=body, headers={**cred.headers, **V})


def test_owner_cannot_unlock_an_admin_lock(client, world):
    assert _act(client, world.admin, world.server_id, {"lock": {"locked_reason": "ops"}}).status_code == 202
    assert _locked(world.server_id) == (True, "admin", "ops")
    denied = _act(client, world.a, world.server_id, {"unlock": None})
    assert denied.status_code == 403
    assert "os_compute_api:os-lock-server:unlock:unlock_override" in denied.get_json()["forbidden"]["message"]
    assert _locked(world.server_id) == (True, "admin", "ops")
    assert _act(client, world.admin, world.server_id, {"unlock": None}).status_code == 202
    assert _locked(world.server_id) == (False, None, None)


def test_owner_lock_is_a_noop_when_locked_and_admin_overrides(client, world):
    assert _act(client, world.a, world.server_id, {"lock": {"locked_reason": "first"}}).status_code == 202
    assert _act(client, world.a, world.server_id, {"lock": {"locked_reason": "second"}}).status_code == 202
    assert _locked(world.server_id) == (True, "owner", "first")  # Nova: the owner's second lock changes nothing
    # The admin (another project) is not the expected locker: unlock_override, which admins pass.
    assert _act(client, world.admin, world.server_id, {"unlock": None}).status_code == 202
    assert _locked(world.server_id) == (False, None, None)
    assert _act(client, world.a, world.server_id, {"lock": None}).status_code == 202
    assert _act(client, world.a, world.server_id, {"unlock": None}).status_code == 202
    assert _locked(world.server_id) == (False, None, None)


def test_override_rule_can_be_opened_by_a_policy_file(client, world, tmp_path, monkeypatch):
    from app import policy
    assert _act(client, world.admin, world.server_id, {"lock": None}).status_code == 202
    rules = {"os_compute_api:os-lock-server:unlock:unlock_override": "role:member"}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(rules))
    monkeypatch.setattr(policy, "_enforcer", policy.load_enforcer(str(path)))
    assert _act(client, world.a, world.server_id, {"unlock": None}).status_code == 202
    assert _locked(world.server_id)[0] is False


def test_lock_argument_before_2_73_is_any_value_and_ignored(client, world):
    """Nova's lock schema before 2.73 is ``{"lock": {}}`` (any value, never read); from 2.73 null or a reason."""
    old = {**world.a.headers, "OpenStack-API-Version": "compute 2.72"}
    url = f"/v2.1/servers/{world.server_id}/action"
    for args in ({"locked_reason": "early"}, [1], "x"):
        assert client.post(url, json={"lock": args}, headers=old).status_code == 202, args
        assert _locked(world.server_id) == (True, "owner", None)
        assert client.post(url, json={"unlock": None}, headers=old).status_code == 202
    for args in ([1], "x", {"locked_reason": ""}, {"other": 1}):
        assert _act(client, world.a, world.server_id, {"lock": args}).status_code == 400, args


def test_openapi_lock_argument_follows_the_microversion(app):
    from app.microversion import APIVersion
    from app.openapi import build
    for version, expected in (((2, 72), {}), ((2, 73), "anyOf")):
        doc = build(app, APIVersion(*version))
        lock = doc["paths"]["/v2.1/servers/{server_id}/action"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]["properties"]["lock"]
        assert (lock == expected) if expected == {} else ({"type": "null"} in lock[expected]), (version, lock)
