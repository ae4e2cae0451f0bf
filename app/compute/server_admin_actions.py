"""Two more server actions of Nova's: ``os-resetState`` (admin: set vm_state active or error and clear the task,
whatever the server was doing) and ``createBackup`` (a snapshot image of type ``backup``; once it is stored the
conductor deletes the server's oldest backups of that type beyond ``rotation``)."""
from __future__ import annotations

from flask import Response, g, jsonify
from marshmallow import fields, validate

from app.compute.instances import get_instance, writable_instance
from app.compute.metadata_items import validate_metadata
from app.compute.schemas import ServerName, StrictSchema, action_argument
from app.compute.server_actions import start_op
from app.compute.views import base_url, compute_prefix
from app.context import current
from app.image.snapshots import drop_queued_image, new_snapshot_image
from app.microversion import current as api_version
from core import states
from core.db import read_session
from core.errors import ApiError, conflict
from tasks.messaging import rpc


class ResetStateSchema(StrictSchema):
    state = fields.String(required=True, validate=validate.OneOf(["active", "error"]))


@action_argument("os-resetState", ResetStateSchema)
def reset_state(server_id: str, body: dict) -> None:
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    rpc.call("stratus.conductor.reset_state", inst.uuid, body["state"], g.request_id, ctx.user_id, ctx.project_id)


class NonNegativeInteger(fields.Integer):
    """Nova's parameter_types.non_negative_integer: an integer, or a string of one, at least 0."""
    def __init__(self, **kw) -> None:
        super().__init__(strict=False, validate=validate.Range(min=0), **kw)

    def _deserialize(self, value, attr, data, **kw):
        if isinstance(value, bool) or isinstance(value, float):
            raise self.make_error("invalid")
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kw)


class CreateBackupSchema(StrictSchema):
    name = ServerName(required=True)
    backup_type = fields.String(required=True)
    rotation = NonNegativeInteger(required=True)
    metadata = fields.Dict()


@action_argument("createBackup", CreateBackupSchema)
def create_backup(server_id: str, body: dict) -> Response:
    metadata = validate_metadata(body.get("metadata") or {})
    inst = writable_instance(server_id)
    rule = states.MORE_ACTIONS["backup"]
    if inst.vm_state not in rule["from"] or inst.task_state is not None:
        attr, state = ("task_state", inst.task_state) if inst.task_state else ("vm_state", inst.vm_state)
        raise conflict(f"Cannot 'createBackup' instance {inst.uuid} while it is in {attr} {state}")
    image_id = new_snapshot_image(inst, body["name"], metadata, current().user_id, backup_type=body["backup_type"])
    try:
        start_op(inst, "backup", params={"image_id": image_id, "backup_type": body["backup_type"],
                                         "rotation": body["rotation"]}, api_name="createBackup")
    except ApiError:
        drop_queued_image(image_id)
        raise
    if api_version().matches("2.45"):
        return jsonify({"image_id": image_id}), 202
    resp = Response(status=202)
    if body["rotation"] > 0:  # Nova's Location: the image under the compute API's image proxy
        resp.headers["Location"] = f"{base_url()}{compute_prefix()}/images/{image_id}"
    return resp
