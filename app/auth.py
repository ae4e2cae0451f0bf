"""Token handling shared by the Identity API (which issues tokens) and every other API (which checks them)."""
from __future__ import annotations

import datetime as dt
import secrets
import uuid

from flask import Flask, g, request
from sqlalchemy import and_, bindparam, func, select

from app.context import RequestContext
from core import db
from core.crypto import token_hash
from core.errors import ApiError
from core.models import Project, Role, RoleAssignment, SystemRoleAssignment, Token, User, utcnow

# Routes that answer without a token (version discovery and token issue).
PUBLIC_ENDPOINTS = {"versions.root", "versions.v2_1", "versions.v2", "identity_versions.versions",
                    "identity_versions.version", "identity_tokens.issue_token", "image.versions", "static"}


def new_token_string() -> str:
    return secrets.token_urlsafe(32)


def roles_of(session, user_id: str, project_id: str) -> list[Role]:
    return list(session.scalars(
        select(Role).join(RoleAssignment, RoleAssignment.role_id == Role.id)
        .where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)))


def system_roles_of(session, user_id: str) -> list[Role]:
    return list(session.scalars(
        select(Role).join(SystemRoleAssignment, SystemRoleAssignment.role_id == Role.id)
        .where(SystemRoleAssignment.user_id == user_id).order_by(Role.name)))


def _token_query(*columns):
    """The token with its user, project and role assignments (a row per role: the project's for a
    project-scoped token, the system's for a system-scoped one), the token's hash bound."""
    return (select(*columns).select_from(Token)
            .join(User, User.id == Token.user_id)
            .outerjoin(Project, Project.id == Token.project_id)
            .outerjoin(RoleAssignment, and_(RoleAssignment.user_id == Token.user_id,
                                            RoleAssignment.project_id == Token.project_id))
            .outerjoin(SystemRoleAssignment, and_(SystemRoleAssignment.user_id == Token.user_id,
                                                  Token.system_scope.is_not(None)))
            .outerjoin(Role, Role.id == func.coalesce(RoleAssignment.role_id, SystemRoleAssignment.role_id))
            .where(Token.id_hash == bindparam("id_hash")))


# Built once (their SQL is compiled once per engine). Every API request runs the second: plain columns, no ORM
# objects to build for a token that is only checked.
_TOKEN_QUERY = _token_query(Token, User, Project, Role)
_CONTEXT_QUERY = _token_query(Token.revoked, Token.expires_at, Token.project_id, Token.system_scope, User.id,
                              User.name, User.enabled, Project.name, Project.enabled, Role.name)


def _usable(revoked: bool, expires_at: dt.datetime, user_enabled: bool, project_id: str | None,
            project_enabled: bool | None, system_scope: str | None = None, has_roles: bool = True) -> bool:
    """Not revoked or expired, its user enabled, its project (if scoped) existing and enabled, and a
    system-scoped token's user still holding a role on the system (Keystone's _validate_system_scope)."""
    return (not revoked and expires_at > utcnow() and user_enabled and (not project_id or bool(project_enabled))
            and (not system_scope or has_roles))


def validate_token(token: str) -> tuple[Token, User, Project | None, list[Role]] | None:
    """The token's row, user, project and roles, or None when it is unknown, revoked, expired, or its user or
    project is disabled. One query: the token joined to its user, project and role assignments, a row per role."""
    with db.read_session() as s:
        rows = s.execute(_TOKEN_QUERY, {"id_hash": token_hash(token)}).all()
    if not rows:
        return None
    row, user, project, _ = rows[0]
    roles = list({role.id: role for *_, role in rows if role is not None}.values())
    if not _usable(row.revoked, row.expires_at, user.enabled, row.project_id, project.enabled if project else None,
                   row.system_scope, bool(roles)):
        return None
    return row, user, project, roles


def request_context(token: str, request_id: str) -> RequestContext | None:
    """The context of a request made with ``token`` (validate_token's checks, read as plain columns)."""
    with db.read_session() as s:
        rows = db.plain_rows(s, _CONTEXT_QUERY, {"id_hash": token_hash(token)}).all()
    if not rows:
        return None
    (revoked, expires_at, project_id, system_scope, user_id, user_name, user_enabled, project_name, project_enabled,
     _) = rows[0]
    roles = tuple(dict.fromkeys(row[-1] for row in rows if row[-1] is not None))
    if not _usable(revoked, expires_at, user_enabled, project_id, project_enabled, system_scope, bool(roles)):
        return None
    return RequestContext(user_id=user_id, user_name=user_name, project_id=project_id,
                          project_name=project_name if project_id else None, roles=roles, request_id=request_id,
                          system_scope=system_scope)


def _authenticate() -> None:
    g.request_id = "req-" + str(uuid.uuid4())
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    token = request.headers.get("X-Auth-Token")
    context = request_context(token, g.request_id) if token else None
    if context is None:
        raise ApiError(401, "The request you have made requires authentication.")
    g.context = context


def token_expiry(ttl_seconds: int) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=ttl_seconds)


def init_app(app: Flask) -> None:
    app.before_request(_authenticate)

    @app.after_request
    def _request_id(resp):
        if "request_id" in g:
            resp.headers["X-OpenStack-Request-Id"] = g.request_id
            resp.headers["X-Compute-Request-Id"] = g.request_id
        return resp
