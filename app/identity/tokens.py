"""Identity tokens (Keystone's /v3/auth): issue (password or token method, project-scoped or unscoped),
validate, revoke, and what a token may reach: its projects, domains and service catalog. The token itself is
never stored, only its hash (core.crypto.token_hash)."""
from __future__ import annotations

import base64
import secrets

from flask import Blueprint, jsonify, request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app import auth
from app.context import current
from app.identity.body_schemas import AuthSchema
from app.identity.bodies import collection, domain_ref, iso, project_body, service_catalog, v3_url
from app.identity.inputs import AUTH_FAILED, body_schema, json_body
from app.identity.service import DEFAULT_DOMAIN_ID, check_password
from app.policy import check, enforce, public
from core import db
from core.crypto import token_hash
from core.errors import ApiError
from core.models import Project, Role, RoleAssignment, Token, User, utcnow
from core.settings import get_settings

bp = Blueprint("identity_tokens", __name__)


def _find_user(session, ref: dict) -> User | None:
    if not isinstance(ref, dict):
        raise ApiError(400, "Invalid input for field 'identity/password/user'.")
    if ref.get("id"):
        return session.get(User, ref["id"])
    name = ref.get("name")
    domain = ref.get("domain")
    if not name or not isinstance(domain, dict):
        raise ApiError(400, "Expecting to find domain in user. The server could not comply with the request "
                            "since it is either malformed or otherwise incorrect.")
    if not _is_default_domain(domain):
        return None
    return session.scalar(select(User).where(User.domain_id == DEFAULT_DOMAIN_ID, User.name == name))


def _is_default_domain(ref: dict) -> bool:
    if "id" in ref:
        return ref["id"] == DEFAULT_DOMAIN_ID
    return str(ref.get("name", "")).lower() == DEFAULT_DOMAIN_ID


def _find_project(session, ref: dict) -> Project | None:
    if not isinstance(ref, dict):
        raise ApiError(400, "Invalid input for field 'scope/project'.")
    if ref.get("id"):
        return session.get(Project, ref["id"])
    name = ref.get("name")
    domain = ref.get("domain")
    if not name or not isinstance(domain, dict):
        raise ApiError(400, "Expecting to find domain in project. The server could not comply with the request "
                            "since it is either malformed or otherwise incorrect.")
    if not _is_default_domain(domain):
        return None
    return session.scalar(select(Project).where(Project.domain_id == DEFAULT_DOMAIN_ID, Project.name == name))


def _token_body(methods: list[str], user: User, project: Project | None, roles: list[Role], token: Token,
                with_catalog: bool = True) -> dict:
    body: dict = {
        "methods": methods,
        "user": {"id": user.id, "name": user.name, "domain": domain_ref(), "password_expires_at": None},
        "audit_ids": [token.audit_id],
        "expires_at": iso(token.expires_at),
        "issued_at": iso(token.issued_at),
    }
    if project is not None:
        body["project"] = {"id": project.id, "name": project.name, "domain": domain_ref()}
        body["is_domain"] = False
        body["roles"] = [{"id": r.id, "name": r.name} for r in roles]
        if with_catalog:
            body["catalog"] = service_catalog()
    return body


@bp.post("/v3/auth/tokens")
@public
@body_schema(AuthSchema, root="auth")
def issue_token(_loaded: dict):
    data = json_body("auth")
    identity = data.get("identity")
    if not isinstance(identity, dict) or not isinstance(identity.get("methods"), list) \
            or not identity["methods"]:
        raise ApiError(400, "Invalid input for field 'identity': 'methods' is a required property.")
    methods = [m for m in identity["methods"] if isinstance(m, str)]
    scope = data.get("scope")
    now = utcnow()
    expires_at = auth.token_expiry(get_settings().token_ttl)
    # Checks run in a read session: bcrypt takes ~0.25 s and must not hold the (SQLite) write lock.
    with db.read_session() as s:
        if "password" in methods:
            pw = identity.get("password")
            if not isinstance(pw, dict) or not isinstance(pw.get("user"), dict):
                raise ApiError(400, "Invalid input for field 'identity/password/user'.")
            user = _find_user(s, pw["user"])
            password = pw["user"].get("password")
            if not isinstance(password, str):
                raise ApiError(400, "Invalid input for field 'identity/password/user/password'.")
            if not check_password(password, user.password_hash if user else None) or not user.enabled:
                raise ApiError(401, AUTH_FAILED)
            token_methods = ["password"]
        elif "token" in methods:
            tok = identity.get("token")
            if not isinstance(tok, dict) or not isinstance(tok.get("id"), str):
                raise ApiError(400, "Invalid input for field 'identity/token/id'.")
            found = auth.validate_token(tok["id"])
            if found is None:
                raise ApiError(401, AUTH_FAILED)
            parent = found[0]
            user = s.get(User, parent.user_id)
            token_methods = list(dict.fromkeys(["token"] + parent.methods.split(",")))
            expires_at = min(expires_at, parent.expires_at)  # a re-scoped token never outlives its parent
        else:
            raise ApiError(401, "Unsupported authentication method. Stratus supports password and token.")

        project = None
        if isinstance(scope, dict):
            if "project" not in scope:
                raise ApiError(401, "Stratus supports project-scoped and unscoped tokens only.")
            project = _find_project(s, scope["project"])
            if project is None or not project.enabled:
                raise ApiError(401, AUTH_FAILED)
            roles = auth.roles_of(s, user.id, project.id)
            if not roles:
                raise ApiError(401, f"User {user.id} has no access to project {project.id}.")
        elif scope in (None, "unscoped"):
            roles = []
            if scope is None and user.default_project_id:
                # Keystone scopes to the default project when no scope is asked for and the user has a role there.
                dp = s.get(Project, user.default_project_id)
                dp_roles = auth.roles_of(s, user.id, dp.id) if dp is not None and dp.enabled else []
                if dp_roles:
                    project, roles = dp, dp_roles
        else:
            raise ApiError(400, "Invalid input for field 'scope'.")

        token_string = auth.new_token_string()
        row = Token(id_hash=token_hash(token_string), user_id=user.id,
                    project_id=project.id if project else None,
                    audit_id=base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
                    issued_at=now, expires_at=expires_at, revoked=False, methods=",".join(token_methods))
        body = _token_body(token_methods, user, project, roles, row, "nocatalog" not in request.args)
    try:
        with db.write_session() as w:
            w.add(row)
    except IntegrityError:  # the user or project was deleted meanwhile
        raise ApiError(401, AUTH_FAILED) from None
    resp = jsonify({"token": body})
    resp.status_code = 201
    resp.headers["X-Subject-Token"] = token_string
    return resp


def _subject():
    subject = request.headers.get("X-Subject-Token")
    if not subject:
        raise ApiError(400, "Missing X-Subject-Token header.")
    found = auth.validate_token(subject)
    ctx = current()
    if found is None:
        check("authenticated")
        raise ApiError(404, "Could not find token.")
    row, user, project, roles = found
    # Keystone's identity:validate_token / revoke_token: admin, or the token's own subject.
    check("authenticated" if row.user_id == ctx.user_id else "admin_api")
    return subject, row, user, project, roles


@bp.route("/v3/auth/tokens", methods=["GET", "HEAD"])
def validate_token():
    subject, row, user, project, roles = _subject()
    body = _token_body(row.methods.split(","), user, project, roles, row, "nocatalog" not in request.args)
    resp = jsonify({"token": body})
    resp.headers["X-Subject-Token"] = subject
    return resp


@bp.delete("/v3/auth/tokens")
def revoke_token():
    _, row, *_ = _subject()
    with db.write_session() as s:
        s.execute(update(Token).where(Token.id_hash == row.id_hash).values(revoked=True))
    return "", 204


@bp.get("/v3/auth/projects")
@enforce("authenticated")
def auth_projects():
    ctx = current()
    with db.read_session() as s:
        rows = s.scalars(select(Project).join(RoleAssignment, RoleAssignment.project_id == Project.id)
                         .where(RoleAssignment.user_id == ctx.user_id, Project.enabled.is_(True))
                         .distinct().order_by(Project.name))
        items = [project_body(p) for p in rows]
    return collection("projects", items, "/auth/projects")


@bp.get("/v3/auth/domains")
@enforce("authenticated")
def auth_domains():
    return collection("domains", [], "/auth/domains")


@bp.get("/v3/auth/catalog")
@enforce("authenticated")
def auth_catalog():
    if current().project_id is None:
        raise ApiError(403, "A project-scoped token is required to produce a service catalog.")
    return jsonify({"catalog": service_catalog(), "links": {"self": v3_url("/auth/catalog"),
                                                           "previous": None, "next": None}})
