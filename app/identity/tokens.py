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
from app.identity import lockout
from app.identity.inputs import AUTH_FAILED, body_schema, json_body
from app.identity.service import DEFAULT_DOMAIN_ID, check_password
from app.policy import check, enforce, public
from core import db
from core.crypto import token_hash
from core.errors import ApiError
from core.models import ApplicationCredential, Project, Role, Token, User, utcnow
from core.settings import get_settings

bp = Blueprint("identity_tokens", __name__)


def _find_named(session, model, ref: object, what: str, field: str):
    """A user or project named in an auth body by id, or by name in the default domain (Keystone's refs)."""
    if not isinstance(ref, dict):
        raise ApiError(400, f"Invalid input for field '{field}'.")
    if ref.get("id"):
        if not isinstance(ref["id"], str):  # Keystone's schema: a string (a list or object would reach the query)
            raise ApiError(400, f"Invalid input for field '{field}/id': expected a string.")
        return session.get(model, ref["id"])
    name = ref.get("name")
    domain = ref.get("domain")
    if not name or not isinstance(domain, dict):
        raise ApiError(400, f"Expecting to find domain in {what}. The server could not comply with the request "
                            "since it is either malformed or otherwise incorrect.")
    if not _is_default_domain(domain):
        return None
    return session.scalar(select(model).where(model.domain_id == DEFAULT_DOMAIN_ID, model.name == name))


def _find_user(session, ref: dict) -> User | None:
    return _find_named(session, User, ref, "user", "identity/password/user")


def _is_default_domain(ref: dict) -> bool:
    if "id" in ref:
        return ref["id"] == DEFAULT_DOMAIN_ID
    return str(ref.get("name", "")).lower() == DEFAULT_DOMAIN_ID


def _find_project(session, ref: dict) -> Project | None:
    return _find_named(session, Project, ref, "project", "scope/project")


def _app_cred_auth(session, ref: object) -> tuple[ApplicationCredential, User]:
    """Keystone's application_credential method: by id, or by name and its user; the secret checked (bcrypt, in
    the caller's read session) and the credential not expired."""
    if not isinstance(ref, dict) or not isinstance(ref.get("secret"), str):
        raise ApiError(400, "Invalid input for field 'identity/application_credential/secret'.")
    if isinstance(ref.get("id"), str):
        cred = session.get(ApplicationCredential, ref["id"])
    elif isinstance(ref.get("name"), str) and isinstance(ref.get("user"), dict):
        owner = _find_user(session, ref["user"])
        cred = None if owner is None else session.scalar(select(ApplicationCredential).where(
            ApplicationCredential.user_id == owner.id, ApplicationCredential.name == ref["name"]))
    else:
        raise ApiError(400, "Invalid input for field 'identity/application_credential': an id, or a name and a "
                            "user, is required.")
    if not check_password(ref["secret"], cred.secret_hash if cred else None):
        raise ApiError(401, AUTH_FAILED)
    if cred.expires_at is not None and cred.expires_at <= utcnow():
        raise ApiError(401, AUTH_FAILED)
    user = session.get(User, cred.user_id)
    if user is None or not user.enabled:
        raise ApiError(401, AUTH_FAILED)
    return cred, user


def _token_body(methods: list[str], user: User, project: Project | None, roles: list[Role], token: Token,
                with_catalog: bool = True, app_cred: ApplicationCredential | None = None) -> dict:
    """Keystone's token: a project-scoped one carries its project, a system-scoped one ``system: {all: true}``;
    both their roles and the catalog; an unscoped one neither. An application credential's names it."""
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
    elif token.system_scope:
        body["system"] = {token.system_scope: True}
    if project is not None or token.system_scope:
        body["roles"] = [{"id": r.id, "name": r.name} for r in roles]
        if with_catalog:
            body["catalog"] = service_catalog(project.id if project else None)
    if app_cred is not None:
        body["application_credential"] = {"id": app_cred.id, "name": app_cred.name,
                                          "restricted": not app_cred.unrestricted}
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
    app_cred = None
    # Checks run in a read session: bcrypt takes ~0.25 s and must not hold the (SQLite) write lock.
    with db.read_session() as s:
        if "application_credential" in methods:
            if scope is not None:
                raise ApiError(401, "Application credentials cannot request a scope.")
            app_cred, user = _app_cred_auth(s, identity.get("application_credential"))
            token_methods = ["application_credential"]
            if app_cred.expires_at is not None:
                expires_at = min(expires_at, app_cred.expires_at)
        elif "password" in methods:
            pw = identity.get("password")
            if not isinstance(pw, dict) or not isinstance(pw.get("user"), dict):
                raise ApiError(400, "Invalid input for field 'identity/password/user'.")
            user = _find_user(s, pw["user"])
            password = pw["user"].get("password")
            if not isinstance(password, str):
                raise ApiError(400, "Invalid input for field 'identity/password/user/password'.")
            if user is not None:
                lockout.check_not_locked(user)
            if not check_password(password, user.password_hash if user else None):
                if user is not None:
                    lockout.record_failure(user)
                raise ApiError(401, AUTH_FAILED)
            if not user.enabled:
                raise ApiError(401, AUTH_FAILED)
            lockout.reset(user)
            token_methods = ["password"]
        elif "token" in methods:
            tok = identity.get("token")
            if not isinstance(tok, dict) or not isinstance(tok.get("id"), str):
                raise ApiError(400, "Invalid input for field 'identity/token/id'.")
            found = auth.validate_token(tok["id"])
            if found is None:
                raise ApiError(401, AUTH_FAILED)
            parent = found[0]
            if parent.app_cred_id is not None:
                raise ApiError(403, "You are not authorized to perform the requested action: Using a token "
                                    "issued with an application credential to get another token is not allowed.")
            user = s.get(User, parent.user_id)
            token_methods = list(dict.fromkeys(["token"] + parent.methods.split(",")))
            expires_at = min(expires_at, parent.expires_at)  # a re-scoped token never outlives its parent
        else:
            raise ApiError(401, "Unsupported authentication method. Stratus supports password, token and "
                                "application_credential.")

        project, system_scope = None, None
        if app_cred is not None:
            project = s.get(Project, app_cred.project_id)
            if project is None or not project.enabled:
                raise ApiError(401, AUTH_FAILED)
            roles = auth.effective_roles_of(s, user.id, project.id, app_cred.id)
            if not roles:
                raise ApiError(401, f"User {user.id} has no access to project {project.id}.")
        elif isinstance(scope, dict) and "system" in scope:
            if len(scope) != 1 or not isinstance(scope["system"], dict):
                raise ApiError(400, "Invalid input for field 'scope': give one of project or system.")
            if scope["system"].get("all") is not True:
                raise ApiError(400, "Invalid input for field 'scope/system': only {\"all\": true} is supported.")
            system_scope = "all"
            roles = auth.effective_system_roles_of(s, user.id)
            if not roles:
                raise ApiError(401, f"User {user.id} has no access to the system")
        elif isinstance(scope, dict):
            if "project" not in scope:
                raise ApiError(401, "Stratus supports project-scoped, system-scoped and unscoped tokens only.")
            project = _find_project(s, scope["project"])
            if project is None or not project.enabled:
                raise ApiError(401, AUTH_FAILED)
            roles = auth.effective_roles_of(s, user.id, project.id)
            if not roles:
                raise ApiError(401, f"User {user.id} has no access to project {project.id}.")
        elif scope in (None, "unscoped"):
            roles = []
            if scope is None and user.default_project_id:
                # Keystone scopes to the default project when no scope is asked for and the user has a role there.
                dp = s.get(Project, user.default_project_id)
                dp_roles = auth.effective_roles_of(s, user.id, dp.id) if dp is not None and dp.enabled else []
                if dp_roles:
                    project, roles = dp, dp_roles
        else:
            raise ApiError(400, "Invalid input for field 'scope'.")

        token_string = auth.new_token_string()
        row = Token(id_hash=token_hash(token_string), user_id=user.id,
                    project_id=project.id if project else None,
                    audit_id=base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
                    issued_at=now, expires_at=expires_at, revoked=False, methods=",".join(token_methods),
                    app_cred_id=app_cred.id if app_cred else None, system_scope=system_scope)
        body = _token_body(token_methods, user, project, roles, row, "nocatalog" not in request.args, app_cred)
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
    app_cred = None
    if row.app_cred_id is not None:
        with db.read_session() as s:
            app_cred = s.get(ApplicationCredential, row.app_cred_id)
    body = _token_body(row.methods.split(","), user, project, roles, row, "nocatalog" not in request.args,
                       app_cred)
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
        rows = s.scalars(select(Project).where(Project.id.in_(auth.projects_of(ctx.user_id)),
                                               Project.enabled.is_(True)).order_by(Project.name))
        items = [project_body(p) for p in rows]
    return collection("projects", items, "/auth/projects")


@bp.get("/v3/auth/domains")
@enforce("authenticated")
def auth_domains():
    return collection("domains", [], "/auth/domains")


@bp.get("/v3/auth/system")
@enforce("authenticated")
def auth_system():
    """The systems the caller has a role on (Keystone: ``[{"all": true}]`` or none)."""
    with db.read_session() as s:
        has = bool(auth.system_roles_of(s, current().user_id))
    return jsonify({"system": [{"all": True}] if has else [],
                    "links": {"self": v3_url("/auth/system"), "previous": None, "next": None}})


@bp.get("/v3/auth/catalog")
@enforce("authenticated")
def auth_catalog():
    ctx = current()
    if ctx.project_id is None and ctx.system_scope is None:
        raise ApiError(403, "A project-scoped token is required to produce a service catalog.")
    return jsonify({"catalog": service_catalog(ctx.project_id), "links": {"self": v3_url("/auth/catalog"),
                                                           "previous": None, "next": None}})
