"""/servers/{id}/os-instance-actions: what was done to a server, with per-step events (Nova's shapes)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from app.compute.servers import get_instance
from app.compute.views import host_id, iso_usec
from app.context import current
from app.db import read_session
from app.errors import not_found
from app.microversion import current as api_version
from app.models import Instance, InstanceAction, InstanceActionEvent
from app.policy import enforce

bp = Blueprint("instance_actions", __name__)


def _instance_any_state(s, server_id: str) -> Instance:
    """Actions stay readable after a delete (Nova reads them with read_deleted=yes from 2.21)."""
    ctx = current()
    if api_version().matches("2.21"):
        inst = s.scalars(select(Instance).where(Instance.uuid == server_id)).first()
        if inst is not None and (ctx.is_admin or inst.project_id == ctx.project_id):
            return inst
        raise not_found(f"Instance {server_id} could not be found.")
    return get_instance(s, server_id, ctx)


def _action_body(a: InstanceAction) -> dict:
    body = {"action": a.action, "instance_uuid": a.instance_uuid, "request_id": a.request_id,
            "user_id": a.user_id, "project_id": a.project_id, "start_time": iso_usec(a.start_time),
            "message": a.message}
    if api_version().matches("2.58"):
        body["updated_at"] = iso_usec(a.updated_at)
    return body


@bp.get("/servers/<server_id>/os-instance-actions")
@enforce("project_reader_api")
def list_actions(server_id: str):
    with read_session() as s:
        inst = _instance_any_state(s, server_id)
        rows = s.scalars(select(InstanceAction).where(InstanceAction.instance_uuid == inst.uuid)
                         .order_by(InstanceAction.start_time.desc(), InstanceAction.id.desc()))
        return jsonify({"instanceActions": [_action_body(a) for a in rows]})


@bp.get("/servers/<server_id>/os-instance-actions/<request_id>")
@enforce("project_reader_api")
def show_action(server_id: str, request_id: str):
    ctx = current()
    v = api_version()
    with read_session() as s:
        inst = _instance_any_state(s, server_id)
        action = s.scalars(select(InstanceAction).where(InstanceAction.instance_uuid == inst.uuid,
                                                        InstanceAction.request_id == request_id)).first()
        if action is None:
            raise not_found(f"Action {request_id} not found")
        events = s.scalars(select(InstanceActionEvent).where(InstanceActionEvent.action_id == action.id)
                           .order_by(InstanceActionEvent.id))
        body = _action_body(action)
        show_details = v.matches("2.51") or ctx.is_admin
        body["events"] = []
        for e in events:
            ev = {"event": e.event, "start_time": iso_usec(e.start_time), "finish_time": iso_usec(e.finish_time),
                  "result": e.result}
            if ctx.is_admin:
                ev["traceback"] = e.traceback
            if v.matches("2.62"):
                ev["hostId"] = host_id(inst.project_id, e.host)
                if ctx.is_admin:
                    ev["host"] = e.host
            if show_details:
                body["events"].append(ev)
        return jsonify({"instanceAction": body})
