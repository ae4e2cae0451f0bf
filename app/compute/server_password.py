"""/servers/{id}/os-server-password: the password the server's guest posted to the metadata service (encrypted
by the guest with the key pair's public key; "" when none was posted), and its removal (Nova's server_password
controller; the guest may then post a new one)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from app.compute.instances import instance_for_subresource
from app.policy import enforce
from core.db import read_session
from core.models import InstancePassword
from tasks.messaging import rpc

bp = Blueprint("server_password", __name__)


@bp.get("/servers/<server_id>/os-server-password")
@enforce("project_reader_api")
def show_password(server_id: str):
    inst = instance_for_subresource(server_id)
    with read_session() as s:
        password = s.scalar(select(InstancePassword.password).where(InstancePassword.instance_uuid == inst.uuid))
    return jsonify({"password": password or ""})


@bp.delete("/servers/<server_id>/os-server-password")
@enforce("project_member_api")
def clear_password(server_id: str):
    inst = instance_for_subresource(server_id)
    rpc.call("stratus.conductor.clear_metadata_password", inst.uuid)
    return "", 204
