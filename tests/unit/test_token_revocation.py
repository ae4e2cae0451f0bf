"""Keystone's token revocation (a password change, a disabled user, a disabled project: their tokens answer 401
from then on, also once enabled again) and its lockout options (off by default)."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.unit.conftest import issue

COMPUTE = {"OpenStack-API-Version": "compute 2.96"}


def _works(client, token: str) -> bool:
    """Whether ``token`` is accepted: on Compute, and by Keystone's validation (then 200, else 404)."""
    compute = client.get("/v2.1/servers", headers={"X-Auth-Token": token, **COMPUTE}).status_code
    identity = client.get("/identity/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert compute in (200, 401) and identity.status_code in (200, 401), (compute, identity.status_code)
    assert (compute == 200) == (identity.status_code == 200)
    return compute == 200


def _token(client, user, project: str | None = None) -> str:
    resp = issue(client, user.user_name, user.password, project or user.project_name)
    assert resp.status_code == 201, resp.get_json()
    return resp.headers["X-Subject-Token"]


def test_own_password_change_revokes_the_users_tokens_only(client, admin, make_user):
    alice = make_user("alice", "proj-a")
    bob = make_user("bob", "proj-a")
    second = _token(client, alice)
    resp = client.post(f"/identity/v3/users/{alice.user_id}/password", headers=alice.headers, json={
        "user": {"password": "new-pass-123", "original_password": alice.password}})
    assert resp.status_code == 204, resp.get_json()
    assert not _works(client, alice.token) and not _works(client, second)
    assert _works(client, bob.token) and _works(client, admin.token)
    assert issue(client, "alice", alice.password, "proj-a").status_code == 401
    assert _works(client, issue(client, "alice", "new-pass-123", "proj-a").headers["X-Subject-Token"])


def test_admin_password_reset_revokes_the_users_tokens(client, admin, make_user):
    alice = make_user("alice", "proj-a")
    assert client.patch(f"/identity/v3/users/{alice.user_id}", json={"user": {"password": "reset-pass-1"}},
                        headers=admin.headers).status_code == 200
    assert not _works(client, alice.token)
    assert _works(client, admin.token)


def test_disabled_user_tokens_stay_revoked_once_enabled_again(client, admin, make_user):
    alice = make_user("alice", "proj-a")
    unscoped = issue(client, "alice", alice.password).headers["X-Subject-Token"]
    url = f"/identity/v3/users/{alice.user_id}"
    assert client.patch(url, json={"user": {"enabled": False}}, headers=admin.headers).status_code == 200
    assert not _works(client, alice.token)
    assert issue(client, "alice", alice.password, "proj-a").status_code == 401
    assert client.patch(url, json={"user": {"enabled": True}}, headers=admin.headers).status_code == 200
    assert not _works(client, alice.token)
    assert client.get("/identity/v3/auth/projects", headers={"X-Auth-Token": unscoped}).status_code == 401
    assert _works(client, _token(client, alice))


def test_disabled_project_revokes_its_tokens_not_the_users_others(client, admin, make_user):
    alice = make_user("alice", "proj-a")
    in_b = make_user("alice", "proj-b")  # alice again, a member of B too
    b_token = in_b.token
    url = f"/identity/v3/projects/{alice.project_id}"
    assert client.patch(url, json={"project": {"enabled": False}}, headers=admin.headers).status_code == 200
    assert not _works(client, alice.token)
    assert _works(client, b_token)  # Keystone revokes by project: alice's token on B is untouched
    assert issue(client, "alice", alice.password, "proj-a").status_code == 401
    assert client.patch(url, json={"project": {"enabled": True}}, headers=admin.headers).status_code == 200
    assert not _works(client, alice.token)  # revoked, not merely suspended
    assert _works(client, _token(client, alice))
    # a rename (or any update that does not disable) revokes nothing
    fresh = _token(client, alice)
    assert client.patch(url, json={"project": {"description": "d"}}, headers=admin.headers).status_code == 200
    assert _works(client, fresh)


@pytest.fixture
def lockout(monkeypatch):
    """lockout(attempts, duration): turn Keystone's lockout on for this test."""
    from core.settings import get_settings

    def _set(attempts: int, duration: int = 0) -> None:
        monkeypatch.setenv("STRATUS_LOCKOUT_FAILURE_ATTEMPTS", str(attempts))
        monkeypatch.setenv("STRATUS_LOCKOUT_DURATION", str(duration))
        get_settings.cache_clear()
    yield _set
    get_settings.cache_clear()


def _fail(client, name: str, times: int) -> list[int]:
    return [issue(client, name, "wrong-password", "proj-a").status_code for _ in range(times)]


def test_lockout_is_off_by_default(client, admin, make_user):
    alice = make_user("alice", "proj-a")
    assert _fail(client, "alice", 8) == [401] * 8
    assert issue(client, "alice", alice.password, "proj-a").status_code == 201
    from core import db
    from core.models import User
    with db.read_session() as s:
        assert s.get(User, alice.user_id).failed_auth_count is None  # nothing recorded while off


def test_lockout_locks_after_the_failures_until_an_admin_enables(client, admin, make_user, lockout):
    alice = make_user("alice", "proj-a")
    lockout(3)
    assert _fail(client, "alice", 2) == [401, 401]
    assert issue(client, "alice", alice.password, "proj-a").status_code == 201  # a success resets the count
    assert _fail(client, "alice", 3) == [401] * 3
    resp = issue(client, "alice", alice.password, "proj-a")  # the right password, but locked
    assert resp.status_code == 401
    assert resp.get_json()["error"]["message"] == f"The account is locked for user: {alice.user_id}."
    assert _works(client, alice.token)  # existing tokens are not revoked by a lockout (Keystone)
    assert issue(client, "admin", admin.password, "admin").status_code == 201  # others are not locked
    # duration 0: locked until an admin enables the user again
    assert client.patch(f"/identity/v3/users/{alice.user_id}", json={"user": {"enabled": True}},
                        headers=admin.headers).status_code == 200
    assert issue(client, "alice", alice.password, "proj-a").status_code == 201


def test_lockout_ends_after_its_duration(client, admin, make_user, lockout):
    from core import db
    from core.models import User, utcnow

    alice = make_user("alice", "proj-a")
    lockout(2, duration=300)
    assert _fail(client, "alice", 2) == [401, 401]
    assert issue(client, "alice", alice.password, "proj-a").get_json()["error"]["message"].startswith(
        "The account is locked")
    with db.write_session() as s:  # the last failure was 301 s ago
        s.get(User, alice.user_id).failed_auth_at = utcnow() - dt.timedelta(seconds=301)
    # after the lockout, a failure counts from 1 again: one more does not lock
    assert _fail(client, "alice", 1) == [401]
    assert issue(client, "alice", alice.password, "proj-a").status_code == 201
    with db.read_session() as s:
        assert s.get(User, alice.user_id).failed_auth_count is None


def test_lockout_settings_are_checked():
    from core.settings import load_settings
    with pytest.raises(ValueError, match="lockout"):
        load_settings({"STRATUS_LOCKOUT_FAILURE_ATTEMPTS": "-1"})
    assert load_settings({}).lockout_failure_attempts == 0 and load_settings({}).lockout_duration == 0
