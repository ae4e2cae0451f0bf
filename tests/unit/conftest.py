"""Fixtures for API unit tests: a fresh state dir + SQLite DB per test, a bootstrapped admin, token helpers."""
from __future__ import annotations

import dataclasses

import pytest

from core.db import reset as db_reset
from tests.unit import image_api

PUBLIC_URL = "http://stratus.test"
ADMIN_PASSWORD = "admin-secret"


@pytest.fixture
def stratus_env(tmp_path, monkeypatch):
    """Point every setting at ``tmp_path`` and create the schema (migrations come from Alembic elsewhere)."""
    monkeypatch.setenv("STRATUS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STRATUS_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("STRATUS_MAX_IMAGE_SIZE", str(1 << 20))
    monkeypatch.setenv("STRATUS_TOKEN_TTL", "3600")
    monkeypatch.setenv("STRATUS_SERVICE_PASSWORD", image_api.SERVICE_PASSWORD)  # the compute's (tests/unit/image_api)
    monkeypatch.setenv("STRATUS_IMAGE_API_URL", f"{PUBLIC_URL}/image")
    for var in ("STRATUS_DATABASE_URL", "STRATUS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STRATUS_PASSWORD_HASH_ROUNDS", "4")  # bcrypt's lowest cost: tests sign in often
    db_reset()
    (tmp_path / "state").mkdir()
    from core.db import get_engine
    from core.models import Base
    Base.metadata.create_all(get_engine())
    yield tmp_path / "state"
    db_reset()


@pytest.fixture
def app(stratus_env):
    from app import create_app
    flask_app = create_app({"TESTING": True})
    image_api.wire(flask_app, PUBLIC_URL)  # in-process compute steps reach images through the Image API
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@dataclasses.dataclass
class Cred:
    user_id: str
    user_name: str
    password: str
    project_id: str
    project_name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


def password_auth(user_name: str, password: str, project_name: str | None = None) -> dict:
    auth: dict = {"identity": {"methods": ["password"], "password": {
        "user": {"name": user_name, "domain": {"name": "Default"}, "password": password}}}}
    if project_name is not None:
        auth["scope"] = {"project": {"name": project_name, "domain": {"name": "Default"}}}
    return {"auth": auth}


def issue(client, user_name: str, password: str, project_name: str | None = None):
    resp = client.post("/identity/v3/auth/tokens", json=password_auth(user_name, password, project_name))
    return resp


@pytest.fixture
def admin(client) -> Cred:
    return bootstrap_admin(client)


def bootstrap_admin(client) -> Cred:
    """The bootstrapped admin with a token scoped to the admin project."""
    from core import db
    from app.identity import service
    with db.write_session() as s:
        user = service.bootstrap(s, ADMIN_PASSWORD)
        project = service.ensure_project(s, "admin")
        uid, pid = user.id, project.id
    resp = issue(client, "admin", ADMIN_PASSWORD, "admin")
    assert resp.status_code == 201, resp.get_json()
    return Cred(uid, "admin", ADMIN_PASSWORD, pid, "admin", resp.headers["X-Subject-Token"])


@pytest.fixture
def make_user(client, admin):
    return user_maker(client)


def user_maker(client):
    """make_user(name, project_name, role) -> Cred: creates project/user/role through the helpers, issues a token."""
    def _make(name: str, project_name: str, role: str = "member", password: str = "pw-" + "x" * 8) -> Cred:
        from core import db
        from app.identity import service
        with db.write_session() as s:
            project = service.ensure_project(s, project_name)
            user = service.ensure_user(s, name, password)
            service.grant(s, user.id, project.id, service.ensure_role(s, role).id)
            uid, pid = user.id, project.id
        resp = issue(client, name, password, project_name)
        assert resp.status_code == 201, resp.get_json()
        return Cred(uid, name, password, pid, project_name, resp.headers["X-Subject-Token"])
    return _make
