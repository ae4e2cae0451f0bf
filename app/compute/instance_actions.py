"""/servers/{id}/os-instance-actions: what was done to a server, with per-step events (Nova's shapes)."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.instances import get_instance
from app.compute.paging import MAX_LIMIT
from app.compute.server_filters import parse_time
from app.compute.views import base_url, compute_prefix, host_id, iso_usec
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import Instance, InstanceAction, InstanceActionEvent

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
        query = select(InstanceAction).where(InstanceAction.instance_uuid == inst.uuid)
        limit = None
        if api_version().matches("2.58"):
            query, limit = _paged(s, query)
        rows = list(s.scalars(query.order_by(InstanceAction.start_time.desc(), InstanceAction.id.desc())))
        body: dict = {"instanceActions": [_action_body(a) for a in rows]}
    if limit is not None and rows and len(rows) == limit:
        params = {**request.args.to_dict(), "marker": rows[-1].request_id}
        body["links"] = [{"rel": "next", "href": f"{base_url()}{compute_prefix()}/servers/{inst.uuid}/"
                                                 f"os-instance-actions?{urlencode(params)}"}]
    return jsonify(body)


def _paged(s, query):
    """2.58: limit, marker (a request id) and changes-since; 2.66: changes-before; other parameters are a 400."""
    args, v = request.args, api_version()
    known = {"limit", "marker", "changes-since"} | ({"changes-before"} if v.matches("2.66") else set())
    for name in args:
        if name not in known:
            raise bad_request(f"Additional properties are not allowed ('{name}' was unexpected)")
    since = parse_time("changes-since", args["changes-since"]) if "changes-since" in args else None
    before = parse_time("changes-before", args["changes-before"]) if "changes-before" in args else None
    if since is not None and before is not None and before < since:
        raise bad_request("The value of changes-since must be less than or equal to changes-before.")
    if since is not None:
        query = query.where(InstanceAction.updated_at >= since)
    if before is not None:
        query = query.where(InstanceAction.updated_at <= before)
    if "marker" in args:
        marker = s.scalars(query.where(InstanceAction.request_id == args["marker"])).first()
        if marker is None:
            raise bad_request(f"Marker {args['marker']} could not be found.")
        query = query.where((InstanceAction.start_time < marker.start_time)
                            | ((InstanceAction.start_time == marker.start_time) & (InstanceAction.id < marker.id)))
    raw = args.get("limit")
    if raw is not None and not raw.isdigit():
        raise bad_request(f"Invalid input for query parameters limit. Value: {raw}. '{raw}' does not match "
                          f"'^[0-9]*$'")
    limit = min(int(raw), MAX_LIMIT) if raw is not None else MAX_LIMIT
    return query.limit(limit), limit


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
            if v.matches("2.84"):
                ev["details"] = e.details
            if v.matches("2.62"):
                ev["hostId"] = host_id(inst.project_id, e.host)
                if ctx.is_admin:
                    ev["host"] = e.host
            if show_details:
                body["events"].append(ev)
        return jsonify({"instanceAction": body})
