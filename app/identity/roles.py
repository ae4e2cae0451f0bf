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
from app.identity.service import system_assignments
from app.policy import check, enforce
from app.policy_rules import DIRECT_IMPLIED
from core import db
from core.errors import ApiError
from core.models import (Group, GroupMembership, GroupRoleAssignment, Project, Role, RoleAssignment,
                         SystemRoleAssignment, User)

bp = Blueprint("identity_roles", __name__)


# --- roles ------------------------------------------------------------------------------------------------------------

@bp.get("/v3/roles")
@enforce("system_reader_api")
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
@enforce("system_reader_api")
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
        s.execute(delete(SystemRoleAssignment).where(SystemRoleAssignment.role_id == role_id))
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
    self_or_admin(user_id, "system_reader_api")
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
    self_or_admin(user_id, "system_reader_api")
    with db.read_session() as s:
        get_or_404(s, Project, project_id, "project")
        get_or_404(s, User, user_id, "user")
        items = [role_body(r) for r in auth.roles_of(s, user_id, project_id)]
    return collection("roles", items, f"/projects/{project_id}/users/{user_id}/roles")


# --- implied roles (Keystone's bootstrap rules, read-only) ------------------------------------------------------------

def _inference_role(r: Role) -> dict:
    return {"id": r.id, "name": r.name, "links": {"self": v3_url(f"/roles/{r.id}")}}


def _implied_rows(s, prior: Role) -> list[Role]:
    names = DIRECT_IMPLIED.get(prior.name.lower(), ())
    rows = {r.name: r for r in s.scalars(select(Role).where(Role.name.in_(names)))} if names else {}
    return [rows[n] for n in names if n in rows]


@bp.get("/v3/role_inferences")
@enforce("admin_api", "identity:list_role_inference_rules")
def list_role_inferences():
    with db.read_session() as s:
        items = [{"prior_role": _inference_role(r), "implies": [_inference_role(i) for i in implied]}
                 for r in s.scalars(select(Role).order_by(Role.name)) if (implied := _implied_rows(s, r))]
    return collection("role_inferences", items, "/role_inferences")


@bp.get("/v3/roles/<prior_role_id>/implies")
@enforce("admin_api", "identity:list_implied_roles")
def list_implied_roles(prior_role_id):
    with db.read_session() as s:
        prior = get_or_404(s, Role, prior_role_id, "role")
        body = {"prior_role": _inference_role(prior), "implies": [_inference_role(i) for i in _implied_rows(s, prior)]}
    return jsonify({"role_inference": body, "links": {"self": v3_url(f"/roles/{prior_role_id}/implies")}})


@bp.route("/v3/roles/<prior_role_id>/implies/<implied_role_id>", methods=["GET", "HEAD"])
@enforce("admin_api", "identity:get_implied_role")
def show_implied_role(prior_role_id, implied_role_id):
    with db.read_session() as s:
        prior = get_or_404(s, Role, prior_role_id, "role")
        implied = get_or_404(s, Role, implied_role_id, "role")
        if implied.id not in {i.id for i in _implied_rows(s, prior)}:
            raise ApiError(404, f"{prior_role_id} does not imply {implied_role_id}.")
        body = {"prior_role": _inference_role(prior), "implies": _inference_role(implied)}
    return jsonify({"role_inference": body,
                    "links": {"self": v3_url(f"/roles/{prior_role_id}/implies/{implied_role_id}")}})


def _assignment_rows(s, args) -> list[dict]:
    """The assignments the filters ask for, as dicts (user or group, project, role)."""
    rows: list[dict] = []
    user_filter, group_filter = args.get("user.id"), args.get("group.id")
    project_filter, role_filter = args.get("scope.project.id"), args.get("role.id")
    system_filter = args.get("scope.system")
    effective = bool_arg("effective") or False
    if system_filter is None and (group_filter is None or effective):
        q = select(RoleAssignment)
        if user_filter is not None:
            q = q.where(RoleAssignment.user_id == user_filter)
        if project_filter is not None:
            q = q.where(RoleAssignment.project_id == project_filter)
        rows += [{"user": a.user_id, "project": a.project_id, "role": a.role_id,
                  "link": f"/projects/{a.project_id}/users/{a.user_id}/roles/{a.role_id}"} for a in s.scalars(q)]
    if system_filter is None and (user_filter is None or effective):
        q = select(GroupRoleAssignment)
        if group_filter is not None:
            q = q.where(GroupRoleAssignment.group_id == group_filter)
        if project_filter is not None:
            q = q.where(GroupRoleAssignment.project_id == project_filter)
        for a in s.scalars(q):
            link = f"/projects/{a.project_id}/groups/{a.group_id}/roles/{a.role_id}"
            if not effective:
                rows.append({"group": a.group_id, "project": a.project_id, "role": a.role_id, "link": link})
                continue
            members = select(GroupMembership.user_id).where(GroupMembership.group_id == a.group_id)
            if user_filter is not None:
                members = members.where(GroupMembership.user_id == user_filter)
            rows += [{"user": uid, "project": a.project_id, "role": a.role_id, "link": link,
                      "membership": f"/groups/{a.group_id}/users/{uid}"} for uid in s.scalars(members)]
    if project_filter is None and group_filter is None and system_filter in (None, "all"):
        rows += [{"user": u.id, "system": "all", "role": r.id, "link": f"/system/users/{u.id}/roles/{r.id}"}
                 for u, r in system_assignments(s, user_filter, None)]
    if effective:  # Keystone's effective assignments carry the implied roles too, each with its rule's link
        by_id = {r.id: r for r in s.scalars(select(Role))}
        by_name = {r.name: r for r in by_id.values()}
        todo = list(rows)
        while todo:
            row = todo.pop(0)
            prior = by_id[row["role"]]
            for name in DIRECT_IMPLIED.get(prior.name.lower(), ()):
                if name in by_name:
                    implied = {**row, "role": by_name[name].id,
                               "prior_role": f"/roles/{prior.id}/implies/{by_name[name].id}"}
                    rows.append(implied)
                    todo.append(implied)
    if role_filter is not None:
        rows = [r for r in rows if r["role"] == role_filter]
    return rows


@bp.get("/v3/role_assignments")
def list_role_assignments():
    """Project (user and group) and system assignments, in Keystone's shapes and filters; no domains or
    inheritance here."""
    args = request.args
    user_filter = args.get("user.id")
    ctx = current()
    # Admins and system readers see everything; anyone may list their own assignments.
    check("authenticated" if user_filter is not None and user_filter == ctx.user_id else "system_reader_api")
    include_names = bool_arg("include_names") or False
    if bool_arg("effective") and args.get("group.id") is not None:
        raise ApiError(400, "Combining effective and group filter will always result in an empty list.")
    if any(k in args for k in ("scope.domain.id", "scope.OS-INHERIT:inherited_to")):
        return collection("role_assignments", [], "/role_assignments")
    items = []
    with db.read_session() as s:
        rows = _assignment_rows(s, args)
        names: dict[tuple[type, str], object] = {}
        if include_names:
            for model, key in ((User, "user"), (Group, "group"), (Project, "project"), (Role, "role")):
                ids = {r[key] for r in rows if key in r}
                if ids:
                    names.update({(model, o.id): o for o in s.scalars(select(model).where(model.id.in_(ids)))})
        seen = set()
        for row in rows:
            actor = "user" if "user" in row else "group"
            key = (actor, row[actor], row.get("project"), row["role"], row.get("membership"), row.get("prior_role"))
            if key in seen:
                continue
            seen.add(key)
            links = {"assignment": v3_url(row["link"])}
            for extra in ("membership", "prior_role"):
                if extra in row:
                    links[extra] = v3_url(row[extra])
            scope = {"project": {"id": row["project"]}} if "project" in row else {"system": {"all": True}}
            item = {"role": {"id": row["role"]}, "scope": scope, actor: {"id": row[actor]}, "links": links}
            if include_names:
                who = names[(User if actor == "user" else Group, row[actor])]
                item["role"]["name"] = names[(Role, row["role"])].name
                if "project" in row:
                    item["scope"]["project"].update(name=names[(Project, row["project"])].name, domain=domain_ref())
                item[actor].update(name=who.name, domain=domain_ref())
            items.append(item)
    order = {"user": 0, "group": 1}  # project assignments (by project), then the system's
    items.sort(key=lambda i: ("system" in i["scope"], i["scope"].get("project", {}).get("id", ""),
                              order["user" if "user" in i else "group"], (i.get("user") or i.get("group"))["id"],
                              i["role"]["id"]))
    return collection("role_assignments", items, "/role_assignments")
