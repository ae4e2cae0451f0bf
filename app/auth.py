"""Token handling shared by the Identity API (which issues tokens) and every other API (which checks them)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

from flask import Flask, g, request
from sqlalchemy import select

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


def validate_token(token: str) -> tuple[Token, User, Project | None, list[Role]] | None:
    now = utcnow()
    with db.read_session() as s:
        row = s.get(Token, hash_token(token))
        if row is None or row.revoked or row.expires_at <= now:
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.enabled:
            return None
        project = s.get(Project, row.project_id) if row.project_id else None
        if row.project_id and (project is None or not project.enabled):
            return None
        roles = roles_of(s, user.id, project.id) if project else []
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
