"""Identity users (Keystone's /v3/users) in the default domain: admin for writes; a user may read itself, its
projects, and change its own password. Passwords are hashed (bcrypt) before any write transaction starts."""
from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request
from sqlalchemy import delete, select, update

from app import auth
from app.context import current
from app.identity.body_schemas import PasswordChangeSchema, UserCreateSchema, UserUpdateSchema
from app.identity.bodies import collection, project_body, user_body
from app.identity.inputs import (AUTH_FAILED, body_schema, bool_arg, bool_field, check_domain, filtered_list,
                                 get_or_404, json_body, self_or_admin, str_field)
from app.identity.service import DEFAULT_DOMAIN_ID, check_password, hash_password
from app.policy import enforce
from core import db
from core.errors import ApiError
from core.models import Project, RoleAssignment, SystemRoleAssignment, Token, User

bp = Blueprint("identity_users", __name__)


@bp.get("/v3/users")
@enforce("system_reader_api")
def list_users():
    return filtered_list(User, user_body, "users")


def _password_hash_of(data: dict) -> str | None:
    """Hash the request's password before any write transaction starts (bcrypt is slow)."""
    password = data.get("password")
    if password is not None and (not isinstance(password, str) or not password or len(password) > 4096):
        raise ApiError(400, "Invalid input for field 'password'.")
    return hash_password(password) if password else None


def _user_fields(data: dict, s, user: User, password_hash: str | None) -> None:
    if "password" in data:
        user.password_hash = password_hash
    for name in ("email", "description"):
        if name in data:
            value = str_field(data, name, max_len=65535 if name == "description" else 255, nullable=True)
            setattr(user, name, value if name == "email" else (value or ""))
    if "default_project_id" in data:
        dp = data["default_project_id"]
        if dp is not None:
            if not isinstance(dp, str):
                raise ApiError(400, "Invalid input for field 'default_project_id'.")
            get_or_404(s, Project, dp, "project")
        user.default_project_id = dp
    enabled = bool_field(data, "enabled")
    if enabled is not None:
        user.enabled = enabled
    if enabled:  # Keystone: enabling a user unlocks it (lockout)
        user.failed_auth_count, user.failed_auth_at = None, None


@bp.post("/v3/users")
@enforce("admin_api")
@body_schema(UserCreateSchema, root="user")
def create_user(_loaded: dict):
    data = json_body("user")
    name = str_field(data, "name", required=True)
    check_domain(data.get("domain_id"))
    password_hash = _password_hash_of(data)
    with db.write_session() as s:
        if s.scalar(select(User.id).where(User.domain_id == DEFAULT_DOMAIN_ID, User.name == name)):
            raise ApiError(409, f"Conflict occurred attempting to store user - Duplicate entry found with name "
                                f"{name} at domain ID {DEFAULT_DOMAIN_ID}.")
        u = User(id=uuid.uuid4().hex, name=name, domain_id=DEFAULT_DOMAIN_ID, enabled=True, description="")
        _user_fields(data, s, u, password_hash)
        s.add(u)
        s.flush()
        body = user_body(u)
    resp = jsonify({"user": body})
    resp.status_code = 201
    return resp


@bp.get("/v3/users/<user_id>")
def show_user(user_id):
    self_or_admin(user_id, "system_reader_api")
    with db.read_session() as s:
        return jsonify({"user": user_body(get_or_404(s, User, user_id, "user"))})


@bp.patch("/v3/users/<user_id>")
@enforce("admin_api")
@body_schema(UserUpdateSchema, root="user")
def update_user(_loaded: dict, user_id):
    data = json_body("user")
    name = str_field(data, "name")
    if data.get("domain_id") not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(400, "Update of `domain_id` is not allowed.")
    password_hash = _password_hash_of(data)
    with db.write_session() as s:
        u = get_or_404(s, User, user_id, "user")
        if name is not None and name != u.name:
            if s.scalar(select(User.id).where(User.domain_id == u.domain_id, User.name == name)):
                raise ApiError(409, f"Conflict occurred attempting to store user - Duplicate entry found with "
                                    f"name {name} at domain ID {u.domain_id}.")
            u.name = name
        _user_fields(data, s, u, password_hash)
        if "password" in data or data.get("enabled") is False:
            s.execute(update(Token).where(Token.user_id == u.id).values(revoked=True))
        s.flush()
        body = user_body(u)
    return jsonify({"user": body})


@bp.delete("/v3/users/<user_id>")
@enforce("admin_api")
def delete_user(user_id):
    with db.write_session() as s:
        u = get_or_404(s, User, user_id, "user")
        s.execute(delete(RoleAssignment).where(RoleAssignment.user_id == user_id))
        s.execute(delete(SystemRoleAssignment).where(SystemRoleAssignment.user_id == user_id))
        s.execute(delete(Token).where(Token.user_id == user_id))
        s.delete(u)
    return "", 204


@bp.post("/v3/users/<user_id>/password")
@body_schema(PasswordChangeSchema, root="user")
def change_password(_loaded: dict, user_id):
    self_or_admin(user_id)
    if current().user_id != user_id:
        raise ApiError(403, "You are not authorized to change another user's password.")
    data = json_body("user")
    new = str_field(data, "password", required=True, max_len=4096)
    original = str_field(data, "original_password", required=True, max_len=4096)
    with db.read_session() as s:
        u = get_or_404(s, User, user_id, "user")
        if not check_password(original, u.password_hash):
            raise ApiError(401, AUTH_FAILED)
    new_hash = hash_password(new)
    with db.write_session() as s:
        s.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))
        s.execute(update(Token).where(Token.user_id == u.id).values(revoked=True))
    return "", 204


@bp.get("/v3/users/<user_id>/projects")
def user_projects(user_id):
    self_or_admin(user_id, "system_reader_api")
    with db.read_session() as s:
        get_or_404(s, User, user_id, "user")
        q = select(Project).where(Project.id.in_(auth.projects_of(user_id))).order_by(Project.name)
        if request.args.get("name") is not None:
            q = q.where(Project.name == request.args["name"])
        enabled = bool_arg("enabled")
        if enabled is not None:
            q = q.where(Project.enabled.is_(enabled))
        items = [project_body(p) for p in s.scalars(q)]
    return collection("projects", items, f"/users/{user_id}/projects")
