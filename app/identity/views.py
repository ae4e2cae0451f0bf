"""Identity API v3 subset (Keystone): version discovery, tokens, catalog, projects, users, roles, domains and
project role assignments. Routes are relative to the blueprint's ``/identity`` prefix.

Only the ``default`` domain exists. Roles are global (as Keystone's non-domain-specific roles). Policy follows
Keystone's defaults: admin for CRUD; any user may read itself, its own projects and tokens.
"""
from __future__ import annotations

import base64
import secrets
import uuid

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app import auth
from app.context import current
from app.identity.service import (DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, check_password, hash_password)
from app.policy import check, enforce, public
from core import db
from core.errors import ApiError
from core.models import Project, Role, RoleAssignment, Token, User, utcnow
from core.settings import get_settings

bp = Blueprint("identity", __name__)

V3_ID = "v3.14"
V3_UPDATED = "2020-04-07T00:00:00Z"
REGION = "RegionOne"
AUTH_FAILED = "The request you have made requires authentication."


# --- helpers ----------------------------------------------------------------------------------------------------

def _base() -> str:
    return get_settings().public_url.rstrip("/")


def _v3_url(path: str = "") -> str:
    return f"{_base()}/identity/v3{path}"


def _iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_body(key: str | None = None) -> dict:
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    if key is None:
        return data
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise ApiError(400, f"Invalid input for field '{key}': a JSON object is required.")
    return inner


def _bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    return raw.strip().lower() not in ("0", "false", "no", "off")


def _str_field(data: dict, name: str, *, required: bool = False, max_len: int = 255,
               nullable: bool = False) -> str | None:
    if name not in data:
        if required:
            raise ApiError(400, f"Invalid input for field '{name}': '{name}' is a required property.")
        return None
    value = data[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
        raise ApiError(400, f"Invalid input for field '{name}': expected a string of at most {max_len} "
                            "characters.")
    return value


def _bool_field(data: dict, name: str) -> bool | None:
    if name not in data:
        return None
    if not isinstance(data[name], bool):
        raise ApiError(400, f"Invalid input for field '{name}': expected a boolean.")
    return data[name]


def _check_domain(domain_id: str | None) -> None:
    if domain_id not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(404, f"Could not find domain: {domain_id}.")


def _collection(key: str, items: list[dict], path: str) -> Response:
    return jsonify({key: items, "links": {"self": _v3_url(path), "previous": None, "next": None}})


def _self_or_admin(user_id: str) -> None:
    ctx = current()
    check("authenticated" if ctx.user_id == user_id else "admin_api")


def _domain_ref() -> dict:
    return {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}


def _domain_body() -> dict:
    return {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME, "description": "The default domain",
            "enabled": True, "tags": [], "options": {}, "links": {"self": _v3_url(f"/domains/{DEFAULT_DOMAIN_ID}")}}


def project_body(p: Project) -> dict:
    return {"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description or "",
            "enabled": p.enabled, "parent_id": p.domain_id, "is_domain": False, "tags": [], "options": {},
            "links": {"self": _v3_url(f"/projects/{p.id}")}}


def user_body(u: User) -> dict:
    body = {"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
            "password_expires_at": None, "options": {}, "links": {"self": _v3_url(f"/users/{u.id}")}}
    if u.default_project_id:
        body["default_project_id"] = u.default_project_id
    if u.email:
        body["email"] = u.email
    if u.description:
        body["description"] = u.description
    return body


def role_body(r: Role) -> dict:
    return {"id": r.id, "name": r.name, "domain_id": None, "description": None, "options": {},
            "links": {"self": _v3_url(f"/roles/{r.id}")}}


def _get_or_404(session, model, ident: str, what: str):
    row = session.get(model, ident)
    if row is None:
        raise ApiError(404, f"Could not find {what}: {ident}.")
    return row


def _endpoint_id(service_type: str, interface: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"stratus:{service_type}:{interface}").hex


def service_catalog() -> list[dict]:
    base = _base()
    services = [("identity", "keystone", f"{base}/identity"),
                ("compute", "nova", f"{base}/v2.1"),
                ("image", "glance", f"{base}/image")]
    catalog = []
    for stype, name, url in services:
        catalog.append({
            "id": uuid.uuid5(uuid.NAMESPACE_URL, f"stratus:{stype}").hex, "type": stype, "name": name,
            "endpoints": [{"id": _endpoint_id(stype, iface), "interface": iface, "region": REGION,
                           "region_id": REGION, "url": url} for iface in ("public", "internal", "admin")],
        })
    return catalog


# --- version discovery ----------------------------------------------------------------------------------------

def _v3_doc() -> dict:
    return {"id": V3_ID, "status": "stable", "updated": V3_UPDATED,
            "links": [{"rel": "self", "href": _v3_url("/")}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}


@bp.get("")
@bp.get("/")
@public
def versions():
    resp = jsonify({"versions": {"values": [_v3_doc()]}})
    resp.status_code = 300
    return resp


@bp.get("/v3")
@bp.get("/v3/")
@public
def version():
    return jsonify({"version": _v3_doc()})


# --- tokens -------------------------------------------------------------------------------------------------------

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
        "user": {"id": user.id, "name": user.name, "domain": _domain_ref(), "password_expires_at": None},
        "audit_ids": [token.audit_id],
        "expires_at": _iso(token.expires_at),
        "issued_at": _iso(token.issued_at),
    }
    if project is not None:
        body["project"] = {"id": project.id, "name": project.name, "domain": _domain_ref()}
        body["is_domain"] = False
        body["roles"] = [{"id": r.id, "name": r.name} for r in roles]
        if with_catalog:
            body["catalog"] = service_catalog()
    return body


@bp.post("/v3/auth/tokens")
@public
def issue_token():
    data = _json_body("auth")
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
        row = Token(id_hash=auth.hash_token(token_string), user_id=user.id,
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
    return _collection("projects", items, "/auth/projects")


@bp.get("/v3/auth/domains")
@enforce("authenticated")
def auth_domains():
    return _collection("domains", [], "/auth/domains")


@bp.get("/v3/auth/catalog")
@enforce("authenticated")
def auth_catalog():
    if current().project_id is None:
        raise ApiError(403, "A project-scoped token is required to produce a service catalog.")
    return jsonify({"catalog": service_catalog(), "links": {"self": _v3_url("/auth/catalog"),
                                                            "previous": None, "next": None}})


# --- domains (read-only: only "default") ------------------------------------------------------------------------

@bp.get("/v3/domains")
@enforce("authenticated")
def list_domains():
    items = [_domain_body()]
    name = request.args.get("name")
    if name is not None and name != DEFAULT_DOMAIN_NAME:
        items = []
    if _bool_arg("enabled") is False:
        items = []
    return _collection("domains", items, "/domains")


@bp.get("/v3/domains/<domain_id>")
@enforce("authenticated")
def show_domain(domain_id):
    if domain_id != DEFAULT_DOMAIN_ID:
        raise ApiError(404, f"Could not find domain: {domain_id}.")
    return jsonify({"domain": _domain_body()})

def _filtered_list(model, render, key: str):
    """Projects or users, filtered by the query's name, domain_id and enabled (Keystone's list filters)."""
    q = select(model).order_by(model.name)
    if request.args.get("name") is not None:
        q = q.where(model.name == request.args["name"])
    if request.args.get("domain_id") is not None:
        q = q.where(model.domain_id == request.args["domain_id"])
    enabled = _bool_arg("enabled")
    if enabled is not None:
        q = q.where(model.enabled.is_(enabled))
    with db.read_session() as s:
        items = [render(row) for row in s.scalars(q)]
    return _collection(key, items, f"/{key}")


# --- projects -------------------------------------------------------------------------------------------------

@bp.get("/v3/projects")
@enforce("admin_api")
def list_projects():
    return _filtered_list(Project, project_body, "projects")


@bp.post("/v3/projects")
@enforce("admin_api")
def create_project():
    data = _json_body("project")
    name = _str_field(data, "name", required=True, max_len=64)
    description = _str_field(data, "description", max_len=65535, nullable=True) or ""
    enabled = _bool_field(data, "enabled")
    _check_domain(data.get("domain_id"))
    if data.get("parent_id") not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(400, "Stratus does not support project hierarchies.")
    if data.get("is_domain"):
        raise ApiError(400, "Stratus does not support creating domains.")
    try:
        with db.write_session() as s:
            if s.scalar(select(Project.id).where(Project.domain_id == DEFAULT_DOMAIN_ID, Project.name == name)):
                raise IntegrityError("duplicate", None, Exception())
            p = Project(id=uuid.uuid4().hex, name=name, description=description,
                        enabled=True if enabled is None else enabled, domain_id=DEFAULT_DOMAIN_ID)
            s.add(p)
            s.flush()
            body = project_body(p)
    except IntegrityError:
        raise ApiError(409, f"Conflict occurred attempting to store project - it is not permitted to have two "
                            f"projects with the same name in the same domain : {name}.") from None
    resp = jsonify({"project": body})
    resp.status_code = 201
    return resp


@bp.get("/v3/projects/<project_id>")
def show_project(project_id):
    # Keystone's identity:get_project: admin, or a token scoped to that project.
    check("project_reader_api", project_id)
    with db.read_session() as s:
        return jsonify({"project": project_body(_get_or_404(s, Project, project_id, "project"))})


@bp.patch("/v3/projects/<project_id>")
@enforce("admin_api")
def update_project(project_id):
    data = _json_body("project")
    name = _str_field(data, "name", max_len=64)
    description = _str_field(data, "description", max_len=65535, nullable=True)
    enabled = _bool_field(data, "enabled")
    if data.get("domain_id") not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(400, "Update of `domain_id` is not allowed.")
    try:
        with db.write_session() as s:
            p = _get_or_404(s, Project, project_id, "project")
            if name is not None and name != p.name:
                if s.scalar(select(Project.id).where(Project.domain_id == p.domain_id, Project.name == name)):
                    raise IntegrityError("duplicate", None, Exception())
                p.name = name
            if description is not None or ("description" in data):
                p.description = description or ""
            if enabled is not None:
                p.enabled = enabled
            s.flush()
            body = project_body(p)
    except IntegrityError:
        raise ApiError(409, f"Conflict occurred attempting to store project - it is not permitted to have two "
                            f"projects with the same name in the same domain : {name}.") from None
    return jsonify({"project": body})


@bp.delete("/v3/projects/<project_id>")
@enforce("admin_api")
def delete_project(project_id):
    with db.write_session() as s:
        p = _get_or_404(s, Project, project_id, "project")
        s.execute(delete(RoleAssignment).where(RoleAssignment.project_id == project_id))
        s.execute(delete(Token).where(Token.project_id == project_id))
        s.execute(update(User).where(User.default_project_id == project_id).values(default_project_id=None))
        s.delete(p)
    return "", 204


# --- users ------------------------------------------------------------------------------------------------------

@bp.get("/v3/users")
@enforce("admin_api")
def list_users():
    return _filtered_list(User, user_body, "users")


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
            value = _str_field(data, name, max_len=65535 if name == "description" else 255, nullable=True)
            setattr(user, name, value if name == "email" else (value or ""))
    if "default_project_id" in data:
        dp = data["default_project_id"]
        if dp is not None:
            if not isinstance(dp, str):
                raise ApiError(400, "Invalid input for field 'default_project_id'.")
            _get_or_404(s, Project, dp, "project")
        user.default_project_id = dp
    enabled = _bool_field(data, "enabled")
    if enabled is not None:
        user.enabled = enabled


@bp.post("/v3/users")
@enforce("admin_api")
def create_user():
    data = _json_body("user")
    name = _str_field(data, "name", required=True)
    _check_domain(data.get("domain_id"))
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
    _self_or_admin(user_id)
    with db.read_session() as s:
        return jsonify({"user": user_body(_get_or_404(s, User, user_id, "user"))})


@bp.patch("/v3/users/<user_id>")
@enforce("admin_api")
def update_user(user_id):
    data = _json_body("user")
    name = _str_field(data, "name")
    if data.get("domain_id") not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(400, "Update of `domain_id` is not allowed.")
    password_hash = _password_hash_of(data)
    with db.write_session() as s:
        u = _get_or_404(s, User, user_id, "user")
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
        u = _get_or_404(s, User, user_id, "user")
        s.execute(delete(RoleAssignment).where(RoleAssignment.user_id == user_id))
        s.execute(delete(Token).where(Token.user_id == user_id))
        s.delete(u)
    return "", 204


@bp.post("/v3/users/<user_id>/password")
def change_password(user_id):
    _self_or_admin(user_id)
    if current().user_id != user_id:
        raise ApiError(403, "You are not authorized to change another user's password.")
    data = _json_body("user")
    new = _str_field(data, "password", required=True, max_len=4096)
    original = _str_field(data, "original_password", required=True, max_len=4096)
    with db.read_session() as s:
        u = _get_or_404(s, User, user_id, "user")
        if not check_password(original, u.password_hash):
            raise ApiError(401, AUTH_FAILED)
    new_hash = hash_password(new)
    with db.write_session() as s:
        s.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))
        s.execute(update(Token).where(Token.user_id == u.id).values(revoked=True))
    return "", 204


@bp.get("/v3/users/<user_id>/projects")
def user_projects(user_id):
    _self_or_admin(user_id)
    with db.read_session() as s:
        _get_or_404(s, User, user_id, "user")
        q = (select(Project).join(RoleAssignment, RoleAssignment.project_id == Project.id)
             .where(RoleAssignment.user_id == user_id).distinct().order_by(Project.name))
        if request.args.get("name") is not None:
            q = q.where(Project.name == request.args["name"])
        enabled = _bool_arg("enabled")
        if enabled is not None:
            q = q.where(Project.enabled.is_(enabled))
        items = [project_body(p) for p in s.scalars(q)]
    return _collection("projects", items, f"/users/{user_id}/projects")


# --- roles ------------------------------------------------------------------------------------------------------

@bp.get("/v3/roles")
@enforce("admin_api")
def list_roles():
    q = select(Role).order_by(Role.name)
    if request.args.get("name") is not None:
        q = q.where(Role.name == request.args["name"])
    if request.args.get("domain_id"):  # no domain-specific roles
        q = q.where(False)
    with db.read_session() as s:
        items = [role_body(r) for r in s.scalars(q)]
    return _collection("roles", items, "/roles")


@bp.post("/v3/roles")
@enforce("admin_api")
def create_role():
    data = _json_body("role")
    name = _str_field(data, "name", required=True)
    if data.get("domain_id"):
        raise ApiError(400, "Stratus does not support domain-specific roles.")
    with db.write_session() as s:
        if s.scalar(select(Role.id).where(Role.name == name)):
            raise ApiError(409, f"Conflict occurred attempting to store role - Duplicate entry found with name "
                                f"{name}.")
        r = Role(id=uuid.uuid4().hex, name=name)
        s.add(r)
        s.flush()
        body = role_body(r)
    resp = jsonify({"role": body})
    resp.status_code = 201
    return resp


@bp.get("/v3/roles/<role_id>")
@enforce("admin_api")
def show_role(role_id):
    with db.read_session() as s:
        return jsonify({"role": role_body(_get_or_404(s, Role, role_id, "role"))})


@bp.patch("/v3/roles/<role_id>")
@enforce("admin_api")
def update_role(role_id):
    data = _json_body("role")
    name = _str_field(data, "name")
    with db.write_session() as s:
        r = _get_or_404(s, Role, role_id, "role")
        if name is not None and name != r.name:
            if s.scalar(select(Role.id).where(Role.name == name)):
                raise ApiError(409, f"Conflict occurred attempting to store role - Duplicate entry found with "
                                    f"name {name}.")
            r.name = name
        s.flush()
        body = role_body(r)
    return jsonify({"role": body})


@bp.delete("/v3/roles/<role_id>")
@enforce("admin_api")
def delete_role(role_id):
    with db.write_session() as s:
        r = _get_or_404(s, Role, role_id, "role")
        s.execute(delete(RoleAssignment).where(RoleAssignment.role_id == role_id))
        s.delete(r)
    return "", 204


# --- role assignments ---------------------------------------------------------------------------------------------

def _assignment_parts(s, project_id: str, user_id: str, role_id: str) -> None:
    _get_or_404(s, Project, project_id, "project")
    _get_or_404(s, User, user_id, "user")
    _get_or_404(s, Role, role_id, "role")


@bp.put("/v3/projects/<project_id>/users/<user_id>/roles/<role_id>")
@enforce("admin_api")
def grant_role(project_id, user_id, role_id):
    with db.write_session() as s:
        _assignment_parts(s, project_id, user_id, role_id)
        if s.get(RoleAssignment, (user_id, project_id, role_id)) is None:
            s.add(RoleAssignment(user_id=user_id, project_id=project_id, role_id=role_id))
    return "", 204


@bp.route("/v3/projects/<project_id>/users/<user_id>/roles/<role_id>", methods=["HEAD"])
def check_role(project_id, user_id, role_id):
    _self_or_admin(user_id)
    with db.read_session() as s:
        _assignment_parts(s, project_id, user_id, role_id)
        if s.get(RoleAssignment, (user_id, project_id, role_id)) is None:
            raise ApiError(404, f"Could not find role assignment with role: {role_id}, user or group: "
                                f"{user_id}, project, domain, or system: {project_id}.")
    return "", 204


@bp.delete("/v3/projects/<project_id>/users/<user_id>/roles/<role_id>")
@enforce("admin_api")
def revoke_role(project_id, user_id, role_id):
    with db.write_session() as s:
        _assignment_parts(s, project_id, user_id, role_id)
        ra = s.get(RoleAssignment, (user_id, project_id, role_id))
        if ra is None:
            raise ApiError(404, f"Could not find role assignment with role: {role_id}, user or group: "
                                f"{user_id}, project, domain, or system: {project_id}.")
        s.delete(ra)
    return "", 204


@bp.get("/v3/projects/<project_id>/users/<user_id>/roles")
def list_user_project_roles(project_id, user_id):
    _self_or_admin(user_id)
    with db.read_session() as s:
        _get_or_404(s, Project, project_id, "project")
        _get_or_404(s, User, user_id, "user")
        items = [role_body(r) for r in auth.roles_of(s, user_id, project_id)]
    return _collection("roles", items, f"/projects/{project_id}/users/{user_id}/roles")


@bp.get("/v3/role_assignments")
def list_role_assignments():
    args = request.args
    user_filter = args.get("user.id")
    ctx = current()
    # Admins see everything; anyone may list their own assignments.
    check("authenticated" if user_filter is not None and user_filter == ctx.user_id else "admin_api")
    include_names = _bool_arg("include_names") or False
    if any(k in args for k in ("group.id", "scope.domain.id", "scope.system", "scope.OS-INHERIT:inherited_to")):
        return _collection("role_assignments", [], "/role_assignments")
    q = (select(RoleAssignment, User, Project, Role)
         .join(User, User.id == RoleAssignment.user_id)
         .join(Project, Project.id == RoleAssignment.project_id)
         .join(Role, Role.id == RoleAssignment.role_id)
         .order_by(Project.name, User.name, Role.name))
    if user_filter is not None:
        q = q.where(RoleAssignment.user_id == user_filter)
    if args.get("scope.project.id") is not None:
        q = q.where(RoleAssignment.project_id == args["scope.project.id"])
    if args.get("role.id") is not None:
        q = q.where(RoleAssignment.role_id == args["role.id"])
    items = []
    with db.read_session() as s:
        for ra, u, p, r in s.execute(q):
            item = {"role": {"id": r.id}, "scope": {"project": {"id": p.id}}, "user": {"id": u.id},
                    "links": {"assignment": _v3_url(f"/projects/{p.id}/users/{u.id}/roles/{r.id}")}}
            if include_names:
                item["role"]["name"] = r.name
                item["scope"]["project"].update(name=p.name, domain=_domain_ref())
                item["user"].update(name=u.name, domain=_domain_ref())
            items.append(item)
    return _collection("role_assignments", items, "/role_assignments")

