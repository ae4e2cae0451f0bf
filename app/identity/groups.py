"""Identity groups (Keystone's /v3/groups) in the default domain: their members, and the roles they hold on
projects (/v3/projects/{p}/groups/{g}/roles), which every member's tokens carry. Admin for everything but a
user's own group list."""
from __future__ import annotations

import uuid

from flask import Blueprint, request
from sqlalchemy import select

from app.identity.bodies import collection, role_body, user_body, v3_url
from app.identity.body_schemas import GroupCreateSchema, GroupUpdateSchema
from app.identity.inputs import (body_schema, check_domain, created, filtered_list, get_or_404, json_body,
                                 self_or_admin, shown, str_field, updated)
from app.identity.service import DEFAULT_DOMAIN_ID
from app.policy import enforce
from core import db
from core.errors import ApiError
from core.models import Group, GroupMembership, GroupRoleAssignment, Project, Role, User

bp = Blueprint("identity_groups", __name__)


def group_body(g: Group) -> dict:
    return {"id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description or "",
            "links": {"self": v3_url(f"/groups/{g.id}")}}


def _duplicate(name: str) -> ApiError:
    return ApiError(409, f"Conflict occurred attempting to store group - Duplicate entry found with name {name} "
                         f"at domain ID {DEFAULT_DOMAIN_ID}.")


def _group_fields(s, data: dict, g: Group) -> None:
    """Name (unique in the domain; required on create), description; the domain cannot move."""
    name = str_field(data, "name", required=g.name is None, max_len=64)
    if g.name is None:
        check_domain(data.get("domain_id"))
    elif data.get("domain_id") not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(400, "Update of `domain_id` is not allowed.")
    if name is not None and name != g.name:
        if s.scalar(select(Group.id).where(Group.domain_id == g.domain_id, Group.name == name)):
            raise _duplicate(name)
        g.name = name
    if "description" in data or g.description is None:
        g.description = str_field(data, "description", max_len=65535, nullable=True) or ""


@bp.get("/v3/groups")
@enforce("admin_api", "identity:list_groups")
def list_groups():
    return filtered_list(Group, group_body, "groups", enabled=False)


@bp.post("/v3/groups")
@enforce("admin_api", "identity:create_group")
@body_schema(GroupCreateSchema, root="group")
def create_group(_loaded: dict):
    return created("group", lambda _s: Group(id=uuid.uuid4().hex, domain_id=DEFAULT_DOMAIN_ID), _group_fields,
                   json_body("group"), group_body)


@bp.get("/v3/groups/<group_id>")
@enforce("admin_api", "identity:get_group")
def show_group(group_id):
    return shown(Group, group_id, "group", group_body)


@bp.patch("/v3/groups/<group_id>")
@enforce("admin_api", "identity:update_group")
@body_schema(GroupUpdateSchema, root="group")
def update_group(_loaded: dict, group_id):
    return updated(Group, group_id, "group", _group_fields, json_body("group"), group_body)


@bp.delete("/v3/groups/<group_id>")
@enforce("admin_api", "identity:delete_group")
def delete_group(group_id):
    with db.write_session() as s:
        g = get_or_404(s, Group, group_id, "group")
        s.query(GroupMembership).filter(GroupMembership.group_id == group_id).delete()
        s.query(GroupRoleAssignment).filter(GroupRoleAssignment.group_id == group_id).delete()
        s.delete(g)
    return "", 204


# --- membership -------------------------------------------------------------------------------------------------------

@bp.get("/v3/groups/<group_id>/users")
@enforce("admin_api", "identity:list_users_in_group")
def list_users_in_group(group_id):
    with db.read_session() as s:
        get_or_404(s, Group, group_id, "group")
        items = [user_body(u) for u in s.scalars(
            select(User).join(GroupMembership, GroupMembership.user_id == User.id)
            .where(GroupMembership.group_id == group_id).order_by(User.name))]
    return collection("users", items, f"/groups/{group_id}/users")


def _membership_parts(s, group_id: str, user_id: str) -> None:
    get_or_404(s, Group, group_id, "group")
    get_or_404(s, User, user_id, "user")


@bp.put("/v3/groups/<group_id>/users/<user_id>")
@enforce("admin_api", "identity:add_user_to_group")
def add_user_to_group(group_id, user_id):
    with db.write_session() as s:
        _membership_parts(s, group_id, user_id)
        if s.get(GroupMembership, (group_id, user_id)) is None:
            s.add(GroupMembership(group_id=group_id, user_id=user_id))
    return "", 204


def _not_member(group_id: str, user_id: str) -> ApiError:
    return ApiError(404, f"User '{user_id}' not found in group '{group_id}'")


@bp.route("/v3/groups/<group_id>/users/<user_id>", methods=["HEAD"])
@enforce("admin_api", "identity:check_user_in_group")
def check_user_in_group(group_id, user_id):
    with db.read_session() as s:
        _membership_parts(s, group_id, user_id)
        if s.get(GroupMembership, (group_id, user_id)) is None:
            raise _not_member(group_id, user_id)
    return "", 204


@bp.delete("/v3/groups/<group_id>/users/<user_id>")
@enforce("admin_api", "identity:remove_user_from_group")
def remove_user_from_group(group_id, user_id):
    with db.write_session() as s:
        _membership_parts(s, group_id, user_id)
        membership = s.get(GroupMembership, (group_id, user_id))
        if membership is None:
            raise _not_member(group_id, user_id)
        s.delete(membership)
    return "", 204


@bp.get("/v3/users/<user_id>/groups")
def list_groups_for_user(user_id):
    self_or_admin(user_id)  # Keystone's identity:list_groups_for_user: admin or the user itself
    with db.read_session() as s:
        get_or_404(s, User, user_id, "user")
        q = (select(Group).join(GroupMembership, GroupMembership.group_id == Group.id)
             .where(GroupMembership.user_id == user_id).order_by(Group.name))
        if request.args.get("name") is not None:
            q = q.where(Group.name == request.args["name"])
        items = [group_body(g) for g in s.scalars(q)]
    return collection("groups", items, f"/users/{user_id}/groups")


# --- the roles groups hold on projects ----------------------------------------------------------------------------

def _grant_parts(s, project_id: str, group_id: str, role_id: str) -> None:
    get_or_404(s, Project, project_id, "project")
    get_or_404(s, Group, group_id, "group")
    get_or_404(s, Role, role_id, "role")


def _no_grant(project_id: str, group_id: str, role_id: str) -> ApiError:
    return ApiError(404, f"Could not find role assignment with role: {role_id}, user or group: {group_id}, "
                         f"project, domain, or system: {project_id}.")


@bp.put("/v3/projects/<project_id>/groups/<group_id>/roles/<role_id>")
@enforce("admin_api", "identity:create_grant")
def grant_group_role(project_id, group_id, role_id):
    with db.write_session() as s:
        _grant_parts(s, project_id, group_id, role_id)
        if s.get(GroupRoleAssignment, (group_id, project_id, role_id)) is None:
            s.add(GroupRoleAssignment(group_id=group_id, project_id=project_id, role_id=role_id))
    return "", 204


@bp.route("/v3/projects/<project_id>/groups/<group_id>/roles/<role_id>", methods=["HEAD", "GET"])
@enforce("admin_api", "identity:check_grant")
def check_group_role(project_id, group_id, role_id):
    with db.read_session() as s:
        _grant_parts(s, project_id, group_id, role_id)
        if s.get(GroupRoleAssignment, (group_id, project_id, role_id)) is None:
            raise _no_grant(project_id, group_id, role_id)
    return "", 204


@bp.delete("/v3/projects/<project_id>/groups/<group_id>/roles/<role_id>")
@enforce("admin_api", "identity:revoke_grant")
def revoke_group_role(project_id, group_id, role_id):
    with db.write_session() as s:
        _grant_parts(s, project_id, group_id, role_id)
        grant = s.get(GroupRoleAssignment, (group_id, project_id, role_id))
        if grant is None:
            raise _no_grant(project_id, group_id, role_id)
        s.delete(grant)
    return "", 204


@bp.get("/v3/projects/<project_id>/groups/<group_id>/roles")
@enforce("admin_api", "identity:list_grants")
def list_group_roles(project_id, group_id):
    with db.read_session() as s:
        get_or_404(s, Project, project_id, "project")
        get_or_404(s, Group, group_id, "group")
        items = [role_body(r) for r in s.scalars(
            select(Role).join(GroupRoleAssignment, GroupRoleAssignment.role_id == Role.id)
            .where(GroupRoleAssignment.group_id == group_id, GroupRoleAssignment.project_id == project_id)
            .order_by(Role.name))]
    return collection("roles", items, f"/projects/{project_id}/groups/{group_id}/roles")
