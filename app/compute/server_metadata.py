"""/servers/{id}/metadata: a server's key/value metadata (Nova's server_metadata controller)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.compute.instances import instance_for_subresource
from app.compute.metadata_items import validate_metadata
from app.compute.body_schemas import MetaBodySchema, MetadataBodySchema
from app.compute.request_body import body_schema, json_body
from app.policy import enforce
from core.errors import bad_request, not_found
from tasks.messaging import rpc

bp = Blueprint("server_metadata", __name__)


def _body(root: str) -> dict:
    body = json_body()
    if root not in body:
        raise bad_request(f"Invalid input for field/attribute {root}. Value: {body!r}. '{root}' is a required "
                          f"property")
    if set(body) - {root}:
        raise bad_request(f"Additional properties are not allowed ('{sorted(set(body) - {root})[0]}' was "
                          f"unexpected)")
    return validate_metadata(body[root], root)


@bp.get("/servers/<server_id>/metadata")
@enforce("project_reader_api")
def index(server_id: str):
    return jsonify({"metadata": dict(instance_for_subresource(server_id).metadata_items or {})})


@bp.get("/servers/<server_id>/metadata/<key>")
@enforce("project_reader_api")
def show(server_id: str, key: str):
    metadata = instance_for_subresource(server_id).metadata_items or {}
    if key not in metadata:
        raise not_found("Metadata item was not found")
    return jsonify({"meta": {key: metadata[key]}})


@bp.post("/servers/<server_id>/metadata")
@enforce("project_member_api")
@body_schema(MetadataBodySchema)
def create(body: dict, server_id: str):
    items = _body("metadata")
    inst = instance_for_subresource(server_id, write=True)
    return jsonify({"metadata": rpc.call("stratus.conductor.update_metadata", inst.uuid, "merge", items)})


@bp.put("/servers/<server_id>/metadata")
@enforce("project_member_api")
@body_schema(MetadataBodySchema)
def update_all(body: dict, server_id: str):
    items = _body("metadata")
    inst = instance_for_subresource(server_id, write=True)
    return jsonify({"metadata": rpc.call("stratus.conductor.update_metadata", inst.uuid, "replace", items)})


@bp.put("/servers/<server_id>/metadata/<key>")
@enforce("project_member_api")
@body_schema(MetaBodySchema)
def update_key(body: dict, server_id: str, key: str):
    meta = _body("meta")
    if len(meta) > 1:
        raise bad_request("Request body contains too many items")
    if key not in meta:
        raise bad_request("Request body and URI mismatch")
    inst = instance_for_subresource(server_id, write=True)
    rpc.call("stratus.conductor.update_metadata", inst.uuid, "set_key", meta)
    return jsonify({"meta": meta})


@bp.delete("/servers/<server_id>/metadata/<key>")
@enforce("project_member_api")
def delete_key(server_id: str, key: str):
    inst = instance_for_subresource(server_id, write=True)
    rpc.call("stratus.conductor.update_metadata", inst.uuid, "delete_key", None, key)
    return "", 204
