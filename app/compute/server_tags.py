"""/servers/{id}/tags (API 2.26+): simple string tags, and the tag filters of the server list (Nova's
server_tags controller)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import ColumnElement, func, not_, select
from sqlalchemy.orm import Session

from app.compute.schemas import json_body
from app.compute.servers import instance_for_subresource
from app.compute.views import base_url, compute_prefix
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import Instance, InstanceTag
from core.states import MAX_TAGS
from tasks.messaging import rpc

bp = Blueprint("server_tags", __name__)
MIN_VERSION = "2.26"


def validate_tag(tag: object, field: str = "tags") -> str:
    """Nova's parameter_types.tag: a string of 1..60 characters without ',' or '/'."""
    if not isinstance(tag, str):
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {tag!r}. {tag!r} is not of type "
                          f"'string'")
    if not 1 <= len(tag) <= 60:
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {tag}. '{tag}' is too "
                          f"{'short' if not tag else 'long'}")
    if "," in tag or "/" in tag:
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {tag}. '{tag}' does not match "
                          f"'^[^,/]*$'")
    return tag


def validate_tags(tags: object) -> list[str]:
    if not isinstance(tags, list):
        raise bad_request(f"Invalid input for field/attribute tags. Value: {tags!r}. {tags!r} is not of type "
                          f"'array'")
    if len(tags) > MAX_TAGS:
        raise bad_request(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
    return [validate_tag(t) for t in tags]


def tags_of(s: Session, uuids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if uuids:
        for uuid, tag in s.execute(select(InstanceTag.instance_uuid, InstanceTag.tag)
                                   .where(InstanceTag.instance_uuid.in_(uuids)).order_by(InstanceTag.tag)):
            out.setdefault(uuid, []).append(tag)
    return out


def list_filters(args) -> list[ColumnElement]:
    """Server list filters (2.26+): tags (all of), tags-any, not-tags (not all of), not-tags-any (none of)."""
    if not api_version().matches(MIN_VERSION):
        return []
    conds: list[ColumnElement] = []

    def having_all(tags: list[str]):
        return (select(InstanceTag.instance_uuid).where(InstanceTag.tag.in_(tags))
                .group_by(InstanceTag.instance_uuid).having(func.count(InstanceTag.tag) == len(set(tags))))

    def having_any(tags: list[str]):
        return select(InstanceTag.instance_uuid).where(InstanceTag.tag.in_(tags))

    for name, build, negate in (("tags", having_all, False), ("tags-any", having_any, False),
                                ("not-tags", having_all, True), ("not-tags-any", having_any, True)):
        if name in args:
            tags = [t.strip() for t in args[name].split(",") if t.strip()]
            if not tags:
                continue
            cond = Instance.uuid.in_(build(tags))
            conds.append(not_(cond) if negate else cond)
    return conds


def _instance(server_id: str, write: bool = False) -> Instance:
    if not api_version().matches(MIN_VERSION):
        raise not_found("The resource could not be found.")
    return instance_for_subresource(server_id, write)


@bp.get("/servers/<server_id>/tags")
@enforce("project_reader_api")
def index(server_id: str):
    inst = _instance(server_id)
    with read_session() as s:
        return jsonify({"tags": tags_of(s, [inst.uuid]).get(inst.uuid, [])})


@bp.get("/servers/<server_id>/tags/<tag>")
@enforce("project_reader_api")
def show(server_id: str, tag: str):
    inst = _instance(server_id)
    with read_session() as s:
        if tag not in tags_of(s, [inst.uuid]).get(inst.uuid, []):
            raise not_found(f"Instance {inst.uuid} has no tag '{tag}'")
    return "", 204


@bp.put("/servers/<server_id>/tags")
@enforce("project_member_api")
def update_all(server_id: str):
    body = json_body()
    if set(body) != {"tags"}:
        raise bad_request(f"Invalid input for field/attribute tags. Value: {body!r}. 'tags' is a required property")
    tags = validate_tags(body["tags"])
    inst = _instance(server_id, write=True)
    return jsonify({"tags": rpc.call("stratus.conductor.update_tags", inst.uuid, "replace", tags)["tags"]})


@bp.put("/servers/<server_id>/tags/<tag>")
@enforce("project_member_api")
def update(server_id: str, tag: str):
    validate_tag(tag, "tag")
    inst = _instance(server_id, write=True)
    result = rpc.call("stratus.conductor.update_tags", inst.uuid, "add", [tag])
    if not result["created"]:
        return "", 204
    resp = Response(status=201)
    resp.headers["Location"] = f"{base_url()}{compute_prefix()}/servers/{inst.uuid}/tags/{tag}"
    return resp


@bp.delete("/servers/<server_id>/tags")
@enforce("project_member_api")
def delete_all(server_id: str):
    inst = _instance(server_id, write=True)
    rpc.call("stratus.conductor.update_tags", inst.uuid, "delete_all", [])
    return "", 204


@bp.delete("/servers/<server_id>/tags/<tag>")
@enforce("project_member_api")
def delete(server_id: str, tag: str):
    inst = _instance(server_id, write=True)
    rpc.call("stratus.conductor.update_tags", inst.uuid, "delete", [tag])
    return "", 204


def parse_create_tags(body: dict) -> list[str]:
    """Tags given at server create (2.52+; servers' version gates reject them earlier)."""
    return validate_tags(body["tags"]) if body.get("tags") else []

