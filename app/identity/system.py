"""Role assignments on the system (Keystone's /v3/system/users/{user_id}/roles): the roles a system-scoped
token carries. Admin grants and revokes; an admin, a system reader or the user itself lists and checks."""
from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from app import auth
from app.identity.bodies import collection, role_body
from app.identity.inputs import get_or_404, self_or_admin
from app.identity.service import grant_system
from app.policy import enforce
from core import db
from core.errors import ApiError
from core.models import Role, SystemRoleAssignment, User

bp = Blueprint("identity_system", __name__)


def _not_found(user_id: str, role_id: str) -> ApiError:
    return ApiError(404, f"Could not find role assignment with role: {role_id}, user or group: {user_id}, "
                         f"project, domain, or system: system.")


def _parts(s, user_id: str, role_id: str) -> None:
    get_or_404(s, User, user_id, "user")
    get_or_404(s, Role, role_id, "role")


@bp.get("/v3/system/users/<user_id>/roles")
def list_system_roles(user_id):
    self_or_admin(user_id, "system_reader_api")
    with db.read_session() as s:
        get_or_404(s, User, user_id, "user")
        items = [role_body(r) for r in auth.system_roles_of(s, user_id)]
    return collection("roles", items, f"/system/users/{user_id}/roles")


@bp.route("/v3/system/users/<user_id>/roles/<role_id>", methods=["GET", "HEAD"])
def check_system_role(user_id, role_id):
    self_or_admin(user_id, "system_reader_api")
    with db.read_session() as s:
        _parts(s, user_id, role_id)
        if s.get(SystemRoleAssignment, (user_id, role_id)) is None:
            raise _not_found(user_id, role_id)
    return "", 204


@bp.put("/v3/system/users/<user_id>/roles/<role_id>")
@enforce("admin_api")
def grant_system_role(user_id, role_id):
    with db.write_session() as s:
        _parts(s, user_id, role_id)
        grant_system(s, user_id, role_id)
    return "", 204


@bp.delete("/v3/system/users/<user_id>/roles/<role_id>")
@enforce("admin_api")
def revoke_system_role(user_id, role_id):
    with db.write_session() as s:
        _parts(s, user_id, role_id)
        ra = s.get(SystemRoleAssignment, (user_id, role_id))
        if ra is None:
            raise _not_found(user_id, role_id)
        s.delete(ra)
    return "", 204

