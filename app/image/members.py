"""Image members (Glance v2 sharing): the owner shares a ``shared`` image with other projects, each member
project accepts or rejects it. Rules and messages as glance/api/v2/image_members.py and its policies: the owner
(project member role) adds and removes members and sees them all; a member sees and changes only its own entry;
readers of the owner project list them. Routes are relative to the blueprint's ``/image`` prefix."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import current
from app.image.body_schemas import MemberCreateSchema, MemberUpdateSchema, body_schema
from app.image.common import iso, json_response, load
from app.policy import check, enforce, register
from core import db, image_access
from core.errors import ApiError
from core.models import Image, ImageMember, utcnow

bp = Blueprint("image_members", __name__)

for _rule, _level in (("add_member", "project_member_api"), ("delete_member", "project_member_api"),
                      ("get_members", "project_reader_api"), ("get_member", "project_reader_api"),
                      ("modify_member", "project_member_api")):
    register(_rule, _level)

MEMBER_LIMIT = 128  # Glance's image_member_quota


def member_body(m: ImageMember) -> dict:
    return {"created_at": iso(m.created_at), "image_id": m.image_id, "member_id": m.member,
            "schema": "/v2/schemas/member", "status": m.status, "updated_at": iso(m.updated_at)}


def _shared_image(s: Session, image_id: str) -> Image:
    img = load(s, image_id)
    if img.visibility != "shared":
        raise ApiError(403, "Only shared images have members.")
    return img


def _read_rule(s: Session, rule: str, img: Image) -> None:
    """get_member(s): a reader of the owner project, or of a member project (Glance's
    ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER, ``project_id:%(member_id)s`` for the caller's own entry)."""
    ctx = current()
    is_member = image_access.member_status(s, img.id, ctx.project_id) is not None
    check("project_reader_api", ctx.project_id if is_member else img.owner, name=rule)


def _body() -> dict:
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise ApiError(400, "Body expected in request.")
    return data


@bp.post("/v2/images/<image_id>/members")
@enforce("authenticated")
@body_schema(MemberCreateSchema)
def add_member(_loaded: dict, image_id):
    data = _body()
    if "member" not in data:
        raise ApiError(400, "Member to be added not specified")
    member = data["member"]
    if not member:
        raise ApiError(400, "Member can't be empty")
    if not isinstance(member, str) or len(member) > 255:
        raise ApiError(400, 'Expected a member in the form: {"member": "image_id"}')
    with db.write_session() as s:
        img = load(s, image_id)
        if img.visibility != "shared":
            raise ApiError(403, f"Not allowed to create members for image {image_id}.")
        check("project_member_api", img.owner, name="add_member")
        members = list(s.scalars(select(ImageMember.member).where(ImageMember.image_id == image_id)))
        if member in members:
            raise ApiError(409, f"Member {member} is duplicated for image {image_id}")
        if len(members) >= MEMBER_LIMIT:
            raise ApiError(413, f"Image member limit exceeded for image {image_id}: Maximum number of image "
                                f"members exceeded. Allowed: {MEMBER_LIMIT}:")
        now = utcnow()
        row = ImageMember(image_id=image_id, member=member, status="pending", created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        return jsonify(member_body(row))


@bp.get("/v2/images/<image_id>/members")
@enforce("authenticated")
def list_members(image_id):
    ctx = current()
    with db.read_session() as s:
        img = load(s, image_id)
        if img.visibility != "shared":
            raise ApiError(403, f"Not allowed to list members for image {image_id}: Only shared images have "
                                "members.")
        _read_rule(s, "get_members", img)
        q = select(ImageMember).where(ImageMember.image_id == image_id).order_by(ImageMember.id)
        if not ctx.is_admin and ctx.project_id != img.owner:
            q = q.where(ImageMember.member == ctx.project_id)  # a member sees its own entry only
        members = [member_body(m) for m in s.scalars(q)]
    return jsonify({"members": members, "schema": "/v2/schemas/members"})


def _member_row(s: Session, img: Image, member_id: str) -> ImageMember:
    ctx = current()
    row = s.scalar(select(ImageMember).where(ImageMember.image_id == img.id, ImageMember.member == member_id))
    if row is None or not (ctx.is_admin or ctx.project_id in (img.owner, member_id)):
        raise ApiError(404, f"{member_id} not found in the member list of the image {img.id}.")
    return row


@bp.get("/v2/images/<image_id>/members/<member_id>")
@enforce("authenticated")
def show_member(image_id, member_id):
    with db.read_session() as s:
        img = load(s, image_id)
        if img.visibility != "shared":
            raise ApiError(404, "Only shared images have members.")  # Glance hides the Forbidden as a 404
        _read_rule(s, "get_member", img)
        return jsonify(member_body(_member_row(s, img, member_id)))


@bp.put("/v2/images/<image_id>/members/<member_id>")
@enforce("authenticated")
@body_schema(MemberUpdateSchema)
def update_member(_loaded: dict, image_id, member_id):
    data = _body()
    if "status" not in data:
        raise ApiError(400, "Status not specified")
    status = data["status"]
    if status not in image_access.MEMBER_STATUSES:
        raise ApiError(400, f"Incorrect request: Status must be one of {', '.join(image_access.MEMBER_STATUSES)}"
                            f", not {status!r}.")
    with db.write_session() as s:
        img = load(s, image_id)
        if img.visibility != "shared":
            raise ApiError(403, f"Not allowed to update members for image {image_id}.")
        # Only the member itself (or an admin) sets its status: Glance's modify_member, project_id:%(member_id)s.
        check("project_member_api", member_id, name="modify_member")
        row = _member_row(s, img, member_id)
        row.status, row.updated_at = status, utcnow()
        s.flush()
        return jsonify(member_body(row))


@bp.delete("/v2/images/<image_id>/members/<member_id>")
@enforce("authenticated")
def delete_member(image_id, member_id):
    with db.write_session() as s:
        img = load(s, image_id)
        if img.visibility != "shared":
            raise ApiError(403, f"Not allowed to delete members for image {image_id}.")
        check("project_member_api", img.owner, name="delete_member")
        row = _member_row(s, img, member_id)
        s.delete(row)
    return "", 204


def _member_schema() -> dict:
    return {"name": "member", "properties": {
        "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
        "image_id": {"type": "string", "description": "An identifier for the image",
                     "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-"
                                "([0-9a-fA-F]){12}$"},
        "created_at": {"type": "string", "description": "Date and time of image member creation"},
        "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
        "status": {"type": "string", "description": "The status of this image member",
                   "enum": list(image_access.MEMBER_STATUSES)},
        "schema": {"readOnly": True, "type": "string"}}}


@bp.get("/v2/schemas/member")
@enforce("authenticated")
def schema_member():
    return jsonify(_member_schema())


@bp.get("/v2/schemas/members")
@enforce("authenticated")
def schema_members():
    return json_response({"name": "members", "properties": {
        "members": {"type": "array", "items": _member_schema()}, "schema": {"type": "string"}},
        "links": [{"rel": "self", "href": "{self}"}, {"rel": "describedby", "href": "{schema}"}]})
