"""Identity projects (Keystone's /v3/projects) in the default domain; no hierarchies. Admin for writes; a
project's own token may read it."""
from __future__ import annotations

import uuid

from flask import Blueprint, jsonify
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.context import current
from app.identity.bodies import project_body
from app.identity.body_schemas import ProjectCreateSchema, ProjectUpdateSchema
from app.identity.inputs import body_schema, bool_field, check_domain, filtered_list, get_or_404, json_body, str_field
from app.identity.service import DEFAULT_DOMAIN_ID
from app.policy import check, enforce
from core import db
from core.errors import ApiError
from core.models import Project, RoleAssignment, Token, User

bp = Blueprint("identity_projects", __name__)


@bp.get("/v3/projects")
@enforce("system_reader_api")
def list_projects():
    return filtered_list(Project, project_body, "projects")


@bp.post("/v3/projects")
@enforce("admin_api")
@body_schema(ProjectCreateSchema, root="project")
def create_project(_loaded: dict):
    data = json_body("project")
    name = str_field(data, "name", required=True, max_len=64)
    description = str_field(data, "description", max_len=65535, nullable=True) or ""
    enabled = bool_field(data, "enabled")
    check_domain(data.get("domain_id"))
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
    # Keystone's identity:get_project: admin, a system reader, or a token scoped to that project.
    check("system_reader_api" if current().system_scope else "project_reader_api", project_id)
    with db.read_session() as s:
        return jsonify({"project": project_body(get_or_404(s, Project, project_id, "project"))})


@bp.patch("/v3/projects/<project_id>")
@enforce("admin_api")
@body_schema(ProjectUpdateSchema, root="project")
def update_project(_loaded: dict, project_id):
    data = json_body("project")
    name = str_field(data, "name", max_len=64)
    description = str_field(data, "description", max_len=65535, nullable=True)
    enabled = bool_field(data, "enabled")
    if data.get("domain_id") not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(400, "Update of `domain_id` is not allowed.")
    try:
        with db.write_session() as s:
            p = get_or_404(s, Project, project_id, "project")
            if name is not None and name != p.name:
                if s.scalar(select(Project.id).where(Project.domain_id == p.domain_id, Project.name == name)):
                    raise IntegrityError("duplicate", None, Exception())
                p.name = name
            if description is not None or ("description" in data):
                p.description = description or ""
            if enabled is not None:
                p.enabled = enabled
            if enabled is False:  # Keystone: disabling a project revokes the tokens scoped to it
                s.execute(update(Token).where(Token.project_id == project_id).values(revoked=True))
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
        p = get_or_404(s, Project, project_id, "project")
        s.execute(delete(RoleAssignment).where(RoleAssignment.project_id == project_id))
        s.execute(delete(Token).where(Token.project_id == project_id))
        s.execute(update(User).where(User.default_project_id == project_id).values(default_project_id=None))
        s.delete(p)
    return "", 204
