"""/servers/{id}/os-volume_attachments: the volumes attached to a server. Stratus has no volume service, so a
server has none: the list is empty and any volume is "not attached" (Nova's answers for a server without
volumes; dashboards read the list on every instance page). Attaching needs a volume service: 405."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.compute.instances import instance_for_subresource
from app.policy import enforce
from core.errors import not_found

bp = Blueprint("volume_attachments", __name__)
_RULE = "os_compute_api:os-volumes-attachments"


@bp.get("/servers/<server_id>/os-volume_attachments")
@enforce("project_reader_api", name=f"{_RULE}:index", description="List volume attachments for an instance")
def index(server_id: str):
    instance_for_subresource(server_id)
    return jsonify({"volumeAttachments": []})


@bp.get("/servers/<server_id>/os-volume_attachments/<volume_id>")
@enforce("project_reader_api", name=f"{_RULE}:show", description="Show details of a volume attachment")
def show(server_id: str, volume_id: str):
    instance_for_subresource(server_id)
    raise not_found(f"Instance {server_id} is not attached to volume {volume_id}")
