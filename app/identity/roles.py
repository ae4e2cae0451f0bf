"""Identity roles (global, as Keystone's non-domain-specific roles) and their assignments to users on
projects: /v3/roles, /v3/projects/{p}/users/{u}/roles and /v3/role_assignments. Admin for writes; a user may list
and check its own assignments."""
from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request
from sqlalchemy import delete, select

from app import auth
from app.context import current
from app.identity.body_schemas import RoleCreateSchema, RoleUpdateSchema
from app.identity.bodies import collection, domain_ref, role_body, v3_url
from app.identity.inputs import body_schema, bool_arg, get_or_404, json_body, self_or_admin, str_field
from app.policy import check, enforce
from core import db
from core.errors import ApiError
from core.models import Project, Role, RoleAssignment, User

bp = Blueprint("identity_roles", __name__)


# --- roles ------------------------------------------------------------------------------------------------------------

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
    return collection("roles", items, "/roles")


@bp.post("/v3/roles")
@enforce("admin_api")
@body_schema(RoleCreateSchema, root="role")
def create_role(_loaded: dict):
    data = json_body("role")
    name = str_field(data, "name", required=True)
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
        return jsonify({"role": role_body(get_or_404(s, Role, role_id, "role"))})


@bp.patch("/v3/roles/<role_id>")
@enforce("admin_api")
@body_schema(RoleUpdateSchema, root="role")
def update_role(_loaded: dict, role_id):
    data = json_body("role")
    name = str_field(data, "name")
    with db.write_session() as s:
        r = get_or_404(s, Role, role_id, "role")
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
        r = get_or_404(s, Role, role_id, "role")
        s.execute(delete(RoleAssignment).where(RoleAssignment.role_id == role_id))
        s.delete(r)
    return "", 204


# --- role assignments -------------------------------------------------------------------------------------------------

def _assignment_parts(s, project_id: str, user_id: str, role_id: str) -> None:
    get_or_404(s, Project, project_id, "project")
    get_or_404(s, User, user_id, "user")
    get_or_404(s, Role, role_id, "role")


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
    self_or_admin(user_id)
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
    self_or_admin(user_id)
    with db.read_session() as s:
        get_or_404(s, Project, project_id, "project")
        get_or_404(s, User, user_id, "user")
        items = [role_body(r) for r in auth.roles_of(s, user_id, project_id)]
    return collection("roles", items, f"/projects/{project_id}/users/{user_id}/roles")


@bp.get("/v3/role_assignments")
def list_role_assignments():
    args = request.args
    user_filter = args.get("user.id")
    ctx = current()
    # Admins see everything; anyone may list their own assignments.
    check("authenticated" if user_filter is not None and user_filter == ctx.user_id else "admin_api")
    include_names = bool_arg("include_names") or False
    if any(k in args for k in ("group.id", "scope.domain.id", "scope.system", "scope.OS-INHERIT:inherited_to")):
        return collection("role_assignments", [], "/role_assignments")
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
                    "links": {"assignment": v3_url(f"/projects/{p.id}/users/{u.id}/roles/{r.id}")}}
            if include_names:
                item["role"]["name"] = r.name
                item["scope"]["project"].update(name=p.name, domain=domain_ref())
                item["user"].update(name=u.name, domain=domain_ref())
            items.append(item)
    return collection("role_assignments", items, "/role_assignments")
