"""Token handling shared by the Identity API (which issues tokens) and every other API (which checks them)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

from flask import Flask, g, request
from sqlalchemy import and_, bindparam, select

from app import db
from app.context import RequestContext
from app.errors import ApiError
from app.models import Project, Role, RoleAssignment, Token, User, utcnow

# Routes that answer without a token (version discovery and token issue).
PUBLIC_ENDPOINTS = {"versions.root", "versions.v2_1", "versions.v2", "identity.versions", "identity.version",
                    "identity.issue_token",
                    "image.versions", "static"}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_string() -> str:
    return secrets.token_urlsafe(32)


def roles_of(session, user_id: str, project_id: str) -> list[Role]:
    return list(session.scalars(
        select(Role).join(RoleAssignment, RoleAssignment.role_id == Role.id)
        .where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)))


# Every API request runs this query: built once (its SQL is compiled once per engine), the token's hash bound.
_TOKEN_QUERY = (select(Token, User, Project, Role)
                .join(User, User.id == Token.user_id)
                .outerjoin(Project, Project.id == Token.project_id)
                .outerjoin(RoleAssignment, and_(RoleAssignment.user_id == Token.user_id,
                                                RoleAssignment.project_id == Token.project_id))
                .outerjoin(Role, Role.id == RoleAssignment.role_id)
                .where(Token.id_hash == bindparam("id_hash")))


def validate_token(token: str) -> tuple[Token, User, Project | None, list[Role]] | None:
    """The token's row, user, project and roles, or None when it is unknown, revoked, expired, or its user or
    project is disabled. One query: the token joined to its user, project and role assignments, a row per role."""
    now = utcnow()
    with db.read_session() as s:
        rows = s.execute(_TOKEN_QUERY, {"id_hash": hash_token(token)}).all()
    if not rows:
        return None
    row, user, project, _ = rows[0]
    if row.revoked or row.expires_at <= now or not user.enabled:
        return None
    if row.project_id and (project is None or not project.enabled):
        return None
    roles = list({role.id: role for *_, role in rows if role is not None}.values())
    return row, user, project, roles


def _authenticate() -> None:
    g.request_id = "req-" + str(uuid.uuid4())
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    token = request.headers.get("X-Auth-Token")
    if not token:
        raise ApiError(401, "The request you have made requires authentication.")
    found = validate_token(token)
    if found is None:
        raise ApiError(401, "The request you have made requires authentication.")
    row, user, project, roles = found
    g.token = row
    g.context = RequestContext(user_id=user.id, user_name=user.name, project_id=project.id if project else None,
                               project_name=project.name if project else None,
                               roles=tuple(r.name for r in roles), request_id=g.request_id)


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
