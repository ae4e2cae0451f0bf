"""Application credentials (Keystone's /v3/users/{user_id}/application_credentials): a user delegates some of its
roles on the token's project to a secret that automation signs in with (auth method ``application_credential``).
The secret is shown once, at creation, and stored hashed; deleting the credential ends its tokens."""
from __future__ import annotations

import base64
import functools
import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app import auth
from app.context import current
from app.identity.bodies import collection, iso, v3_url
from app.identity.body_schemas import ApplicationCredentialCreateSchema
from app.identity.inputs import body_schema, bool_field, get_or_404, json_body, str_field
from app.identity.service import hash_password
from app.policy import authorize, checks_inside
from core import db
from core.errors import ApiError
from core.models import (ApplicationCredential, ApplicationCredentialRole, Role, Token, User, utcnow)

bp = Blueprint("identity_application_credentials", __name__)

# Keystone's defaults (no system scope here: admins stand for system readers).
_GET, _LIST = "identity:get_application_credential", "identity:list_application_credentials"
_CREATE, _DELETE = "identity:create_application_credential", "identity:delete_application_credential"


def _forbidden(action: str) -> ApiError:
    return ApiError(403, f"You are not authorized to perform the requested action: {action}.")


def _refuse_restricted_token() -> None:
    """Keystone: a token from a restricted application credential cannot manage application credentials."""
    ctx = current()
    if ctx.app_cred_id is None:
        return
    with db.read_session() as s:
        cred = s.get(ApplicationCredential, ctx.app_cred_id)
    if cred is None or not cred.unrestricted:
        raise _forbidden("Using method 'application_credential' is not allowed for managing additional "
                         "application credentials")


def _roles_of(s, cred_ids: list[str]) -> dict[str, list[Role]]:
    out: dict[str, list[Role]] = {i: [] for i in cred_ids}
    if cred_ids:
        for acr, role in s.execute(select(ApplicationCredentialRole, Role)
                                   .join(Role, Role.id == ApplicationCredentialRole.role_id)
                                   .where(ApplicationCredentialRole.app_cred_id.in_(cred_ids))
                                   .order_by(Role.name)):
            out[acr.app_cred_id].append(role)
    return out


def _body(cred: ApplicationCredential, roles: list[Role], secret: str | None = None) -> dict:
    body = {"id": cred.id, "name": cred.name, "description": cred.description, "user_id": cred.user_id,
            "project_id": cred.project_id, "expires_at": iso(cred.expires_at) if cred.expires_at else None,
            "unrestricted": cred.unrestricted, "access_rules": [],
            "roles": [{"id": r.id, "name": r.name, "domain_id": None} for r in roles],
            "links": {"self": v3_url(f"/users/{cred.user_id}/application_credentials/{cred.id}")}}
    if secret is not None:
        body["secret"] = secret
    return body


def _expires_at(data: dict) -> dt.datetime | None:
    raw = data.get("expires_at")
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Invalid input for field 'expires_at': {raw!r} is not a valid date-time.") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if value <= utcnow():
        raise ApiError(400, "The 'expires_at' must not be before now. The server could not comply with the "
                            "request since it is either malformed or otherwise incorrect. The client is assumed "
                            "to be in error.")
    return value


def _requested_roles(s, data: dict, held: list[Role]) -> list[Role]:
    """The roles asked for (by id or name; default: the token's), each one among the token's."""
    refs = data.get("roles")
    if refs is None or refs == []:  # Keystone: none asked for (or an empty list) means the token's roles
        return held
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ApiError(400, "Invalid input for field 'roles': expected a list of objects.")
    chosen: dict[str, Role] = {}
    for ref in refs:
        if isinstance(ref.get("id"), str):
            role = get_or_404(s, Role, ref["id"], "role")
        elif isinstance(ref.get("name"), str):
            role = s.scalar(select(Role).where(Role.name == ref["name"]))
            if role is None:
                raise ApiError(404, f"Could not find role: {ref['name']}.")
        else:
            raise ApiError(400, "Invalid input for field 'roles': each role needs an id or a name.")
        chosen[role.id] = role
    held_ids = {r.id for r in held}
    if any(role.id not in held_ids for role in chosen.values()):
        raise ApiError(400, "Invalid application credential: Cannot create an application credential with "
                            "unassigned role")
    return list(chosen.values())


def _may_create(view: Callable) -> Callable:
    """Keystone authorizes a create before it reads the body: the caller itself, with a project-scoped token
    that does not come from a restricted application credential."""
    @functools.wraps(view)
    def checked(user_id: str) -> Any:
        ctx = current()
        authorize(_CREATE, target_user=user_id)
        _refuse_restricted_token()
        if ctx.user_id != user_id:
            raise _forbidden("Cannot create an application credential for another user")
        if ctx.project_id is None:
            raise ApiError(400, "Application credentials are created with a project-scoped token.")
        return view(user_id=user_id)
    return checked


@bp.post("/v3/users/<user_id>/application_credentials")
@checks_inside((_CREATE, "admin_or_owner"))
@_may_create
@body_schema(ApplicationCredentialCreateSchema, root="application_credential")
def create_application_credential(_loaded: dict, user_id):
    ctx = current()
    data = json_body("application_credential")
    name = str_field(data, "name", required=True)
    description = str_field(data, "description", max_len=65535, nullable=True)
    unrestricted = bool_field(data, "unrestricted") or False
    expires_at = _expires_at(data)
    if data.get("access_rules"):
        raise ApiError(400, "Stratus does not support access rules on application credentials.")
    secret = data.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret or len(secret) > 4096):
        raise ApiError(400, "Invalid input for field 'secret': expected a non-empty string.")
    secret = secret or base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    with db.read_session() as s:
        held = auth.effective_roles_of(s, user_id, ctx.project_id, ctx.app_cred_id)
        role_ids = [r.id for r in _requested_roles(s, data, held)]
    secret_hash = hash_password(secret)  # bcrypt, before the write transaction
    cred = ApplicationCredential(id=uuid.uuid4().hex, name=name, user_id=user_id, project_id=ctx.project_id,
                                 description=description, secret_hash=secret_hash, expires_at=expires_at,
                                 unrestricted=unrestricted)
    try:
        with db.write_session() as s:
            if s.scalar(select(ApplicationCredential.id).where(ApplicationCredential.user_id == user_id,
                                                              ApplicationCredential.name == name)):
                raise IntegrityError("duplicate", None, Exception())
            s.add(cred)
            s.flush()
            s.add_all(ApplicationCredentialRole(app_cred_id=cred.id, role_id=rid) for rid in role_ids)
            s.flush()
            body = _body(cred, _roles_of(s, [cred.id])[cred.id], secret)
    except IntegrityError:
        raise ApiError(409, "Conflict occurred attempting to store application_credential - Duplicate entry.") \
            from None
    resp = jsonify({"application_credential": body})
    resp.status_code = 201
    return resp


@bp.get("/v3/users/<user_id>/application_credentials")
@checks_inside((_LIST, "admin_or_owner"))
def list_application_credentials(user_id):
    authorize(_LIST, target_user=user_id)
    q = select(ApplicationCredential).where(ApplicationCredential.user_id == user_id) \
        .order_by(ApplicationCredential.name)
    if request.args.get("name") is not None:
        q = q.where(ApplicationCredential.name == request.args["name"])
    with db.read_session() as s:
        get_or_404(s, User, user_id, "user")
        creds = list(s.scalars(q))
        roles = _roles_of(s, [c.id for c in creds])
        items = [_body(c, roles[c.id]) for c in creds]
    return collection("application_credentials", items, f"/users/{user_id}/application_credentials")


def _get(s, user_id: str, cred_id: str) -> ApplicationCredential:
    cred = s.get(ApplicationCredential, cred_id)
    if cred is None or cred.user_id != user_id:
        raise ApiError(404, f"Could not find Application Credential: {cred_id}.")
    return cred


@bp.get("/v3/users/<user_id>/application_credentials/<cred_id>")
@checks_inside((_GET, "admin_or_owner"))
def show_application_credential(user_id, cred_id):
    authorize(_GET, target_user=user_id)
    with db.read_session() as s:
        cred = _get(s, user_id, cred_id)
        return jsonify({"application_credential": _body(cred, _roles_of(s, [cred.id])[cred.id])})


@bp.delete("/v3/users/<user_id>/application_credentials/<cred_id>")
@checks_inside((_DELETE, "admin_or_owner"))
def delete_application_credential(user_id, cred_id):
    authorize(_DELETE, target_user=user_id)
    _refuse_restricted_token()
    with db.write_session() as s:
        cred = _get(s, user_id, cred_id)
        s.execute(delete(Token).where(Token.app_cred_id == cred.id))  # its tokens end with it
        s.execute(delete(ApplicationCredentialRole).where(ApplicationCredentialRole.app_cred_id == cred.id))
        s.delete(cred)
    return "", 204
