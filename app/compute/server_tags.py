"""/servers/{id}/tags (API 2.26+): a server's simple string tags (Nova's server_tags controller); the tag rules
and the list filters are in app/compute/instance_tags.py."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.compute.instance_tags import MIN_VERSION, tags_of, validate_tag, validate_tags
from app.compute.instances import instance_for_subresource
from app.compute.body_schemas import TagsBodySchema
from app.compute.request_body import body_schema
from app.compute.views import base_url, compute_prefix
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import Instance
from tasks.messaging import rpc

bp = Blueprint("server_tags", __name__)


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
@body_schema(TagsBodySchema)
def update_all(body: dict, server_id: str):
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
    del resp.headers["Content-Type"]  # Nova's 201 has no body, so no media type
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

