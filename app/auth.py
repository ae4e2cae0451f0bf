"""Token handling shared by the Identity API (which issues tokens) and every other API (which checks them)."""
from __future__ import annotations

import datetime as dt
import secrets
import uuid

from flask import Flask, g, request
from sqlalchemy import and_, bindparam, exists, or_, select, union
from sqlalchemy.orm import aliased

from app.context import RequestContext
from app.policy_rules import IMPLIED_ROLES
from core import db
from core.crypto import token_hash
from core.errors import ApiError
from core.models import (ApplicationCredentialRole, GroupMembership, GroupRoleAssignment, Project, Role,
                         RoleAssignment, SystemRoleAssignment, Token, User, utcnow)

# Routes that answer without a token (version discovery and token issue).
PUBLIC_ENDPOINTS = {"versions.root", "versions.v2_1", "versions.v2", "identity_versions.versions",
                    "identity_versions.version", "identity_tokens.issue_token", "image.versions", "static",
                    "placement_root.versions", "network_root.versions"}


def new_token_string() -> str:
    return secrets.token_urlsafe(32)


def roles_of(session, user_id: str, project_id: str) -> list[Role]:
    """The roles assigned to the user itself on the project (not through groups, not implied)."""
    return list(session.scalars(
        select(Role).join(RoleAssignment, RoleAssignment.role_id == Role.id)
        .where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)))


def projects_of(user_id: str):
    """SQL: the ids of the projects the user holds a role on, itself or through one of its groups."""
    return union(select(RoleAssignment.project_id).where(RoleAssignment.user_id == user_id),
                 select(GroupRoleAssignment.project_id)
                 .join(GroupMembership, GroupMembership.group_id == GroupRoleAssignment.group_id)
                 .where(GroupMembership.user_id == user_id))


def _held(user_id, project_id, role_id):
    """SQL: the user holds the role on the project, itself or through one of its groups."""
    direct = exists().where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id,
                            RoleAssignment.role_id == role_id)
    via_group = exists().where(GroupMembership.user_id == user_id,
                               GroupRoleAssignment.group_id == GroupMembership.group_id,
                               GroupRoleAssignment.project_id == project_id, GroupRoleAssignment.role_id == role_id)
    return or_(direct, via_group)


def implied_names(names) -> list[str]:
    """The names with the roles they imply (Keystone's effective roles), in a stable order."""
    out = dict.fromkeys(n for n in names)
    for name in list(out):
        out.update(dict.fromkeys(IMPLIED_ROLES.get(name.lower(), ())))
    return list(out)


def _bounded(user_roles: list[str], app_cred_roles: list[str] | None) -> list[str]:
    """The token's role names: the user's effective roles; for an application credential, its roles the user
    still has (Keystone: the credential's roles within the user's effective roles)."""
    effective = implied_names(user_roles)
    if app_cred_roles is None:
        return effective
    return [name for name in dict.fromkeys(app_cred_roles) if name in effective]


def effective_roles_of(session, user_id: str, project_id: str, app_cred_id: str | None = None) -> list[Role]:
    """What a token of the user on the project carries: the roles held directly or through groups, with the roles
    they imply; an application credential's token, the credential's roles the user still has."""
    held = [r.name for r in session.scalars(select(Role).where(_held(user_id, project_id, Role.id)))]
    bound = None
    if app_cred_id is not None:
        bound = list(session.scalars(select(Role.name).join(ApplicationCredentialRole,
                                                            ApplicationCredentialRole.role_id == Role.id)
                                     .where(ApplicationCredentialRole.app_cred_id == app_cred_id)))
    names = _bounded(held, bound)
    by_name = {r.name: r for r in session.scalars(select(Role).where(Role.name.in_(names)))} if names else {}
    return [by_name[n] for n in names if n in by_name]


def _held_on_system(user_id, role_id):
    """SQL: the user holds the role on the system."""
    return exists().where(SystemRoleAssignment.user_id == user_id, SystemRoleAssignment.role_id == role_id)


def system_roles_of(session, user_id: str) -> list[Role]:
    """The roles assigned to the user on the system (not implied)."""
    return list(session.scalars(select(Role).where(_held_on_system(user_id, Role.id)).order_by(Role.name)))


def effective_system_roles_of(session, user_id: str) -> list[Role]:
    """What a system-scoped token of the user carries: its roles on the system with the roles they imply (Keystone
    expands implied roles for system tokens too)."""
    names = implied_names(r.name for r in system_roles_of(session, user_id))
    by_name = {r.name: r for r in session.scalars(select(Role).where(Role.name.in_(names)))} if names else {}
    return [by_name[n] for n in names if n in by_name]


_APP_ROLE = aliased(Role)
# Every API request runs this: the token with its user, project, the roles the user holds in its scope (the
# project's, directly or through groups, or the system's; a row per role) and, for an application credential's
# token, the credential's roles (a row per pair). Plain columns, no ORM objects to build for a token that is only
# checked; compiled once per engine.
_CONTEXT_QUERY = (
    select(Token.revoked, Token.expires_at, Token.project_id, Token.system_scope, Token.app_cred_id, User.id,
           User.name, User.enabled, Project.name, Project.enabled, Role.name, _APP_ROLE.name)
    .select_from(Token)
    .join(User, User.id == Token.user_id)
    .outerjoin(Project, Project.id == Token.project_id)
    .outerjoin(Role, or_(and_(Token.project_id.is_not(None), _held(Token.user_id, Token.project_id, Role.id)),
                         and_(Token.system_scope.is_not(None), _held_on_system(Token.user_id, Role.id))))
    .outerjoin(ApplicationCredentialRole, ApplicationCredentialRole.app_cred_id == Token.app_cred_id)
    .outerjoin(_APP_ROLE, _APP_ROLE.id == ApplicationCredentialRole.role_id)
    .where(Token.id_hash == bindparam("id_hash")))
_TOKEN_QUERY = (select(Token, User, Project).select_from(Token).join(User, User.id == Token.user_id)
                .outerjoin(Project, Project.id == Token.project_id).where(Token.id_hash == bindparam("id_hash")))


def _usable(revoked: bool, expires_at: dt.datetime, user_enabled: bool, project_id: str | None,
            project_enabled: bool | None) -> bool:
    """Not revoked or expired, its user enabled, its project (if scoped) existing and enabled."""
    return not revoked and expires_at > utcnow() and user_enabled and (not project_id or bool(project_enabled))


def validate_token(token: str) -> tuple[Token, User, Project | None, list[Role]] | None:
    """The token's row, user, project and roles, or None when it is unknown, revoked, expired, or its user or
    project is disabled, or it is scoped to a project (or the system) where its user (or application credential)
    has no role left."""
    with db.read_session() as s:
        found = s.execute(_TOKEN_QUERY, {"id_hash": token_hash(token)}).first()
        if found is None:
            return None
        row, user, project = found
        if not _usable(row.revoked, row.expires_at, user.enabled, row.project_id,
                       project.enabled if project else None):
            return None
        if project is not None:
            roles = effective_roles_of(s, user.id, project.id, row.app_cred_id)
        else:
            roles = effective_system_roles_of(s, user.id) if row.system_scope else []
    # Keystone: a scoped token whose user holds no role left in its scope (project or system) is invalid
    if (project is not None or row.system_scope) and not roles:
        return None
    return row, user, project, roles


def request_context(token: str, request_id: str) -> RequestContext | None:
    """The context of a request made with ``token`` (validate_token's checks, read as plain columns)."""
    with db.read_session() as s:
        rows = db.plain_rows(s, _CONTEXT_QUERY, {"id_hash": token_hash(token)}).all()
    if not rows:
        return None
    (revoked, expires_at, project_id, system_scope, app_cred_id, user_id, user_name, user_enabled, project_name,
     project_enabled, _, _) = rows[0]
    if not _usable(revoked, expires_at, user_enabled, project_id, project_enabled):
        return None
    held = [row[-2] for row in rows if row[-2] is not None]
    bound = [row[-1] for row in rows if row[-1] is not None] if app_cred_id is not None else None
    roles = _bounded(held, bound)
    if (project_id or system_scope) and not roles:  # no role left in its scope: invalid, as validate_token
        return None
    return RequestContext(user_id=user_id, user_name=user_name, project_id=project_id,
                          project_name=project_name if project_id else None, roles=tuple(roles),
                          request_id=request_id, app_cred_id=app_cred_id, system_scope=system_scope)


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
