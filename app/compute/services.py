"""/os-services: the compute fleet's services, their state and zone, enabled/disabled and forced down (Nova's
shapes by microversion; written by the conductor)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.body_schemas import ServiceUpdateSchema
from app.compute.request_body import body_schema, json_body
from app.compute.schemas import MAX_INT, is_uuid
from app.compute.views import api_id, iso_usec
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.host_zones import effective_zones, zone_of
from core.models import Service
from core.services import COMPUTE_BINARY, service_is_up
from tasks.messaging import rpc

bp = Blueprint("services", __name__)


def _service_body(svc: Service, zone: str | None) -> dict:
    """Nova's service view; a compute service is in its host's zone, the others (conductor, scheduler) in
    ``internal``."""
    zone = (zone or "internal") if svc.binary == COMPUTE_BINARY else "internal"
    body = {"id": api_id(svc, api_version()), "binary": svc.binary, "host": svc.host, "zone": zone,
            "status": "disabled" if svc.disabled else "enabled", "state": "up" if service_is_up(svc) else "down",
            "updated_at": iso_usec(svc.updated_at), "disabled_reason": svc.disabled_reason}
    if api_version().matches("2.11"):
        body["forced_down"] = bool(svc.forced_down)
    return body


@bp.get("/os-services")
@enforce("admin_api", name="os_compute_api:os-services:list")
def list_services():
    with read_session() as s:
        zones = effective_zones(s)
        q = select(Service).order_by(Service.id)
        if request.args.get("host"):
            q = q.where(Service.host == request.args["host"])
        if request.args.get("binary"):
            q = q.where(Service.binary == request.args["binary"])
        rows = s.scalars(q)
        return jsonify({"services": [_service_body(svc, zones.get(svc.host)) for svc in rows]})


@bp.put("/os-services/<service_id>")
@enforce("admin_api", name="os_compute_api:os-services:update")
@body_schema(ServiceUpdateSchema, since="2.53")
def update_service(_loaded: dict, service_id: str):
    if not api_version().matches("2.53"):
        raise not_found("Use microversion 2.53 or later to update a service by its UUID.")
    if not is_uuid(service_id):
        raise bad_request(f"Invalid uuid {service_id}")
    body = json_body()
    allowed = {"status", "disabled_reason", "forced_down"}
    if not body or set(body) - allowed:
        raise bad_request(f"Invalid input for field/attribute service. Allowed keys: {sorted(allowed)}")
    if "status" in body and body["status"] not in ("enabled", "disabled"):
        raise bad_request(f"Invalid input for field/attribute status. Value: {body['status']}.")
    reason = body.get("disabled_reason")
    if "disabled_reason" in body and not (isinstance(reason, str) and 1 <= len(reason) <= 255):
        raise bad_request(f"Invalid input for field/attribute disabled_reason. Value: {reason!r}.")
    if "disabled_reason" in body and body.get("status") != "disabled":
        raise bad_request("Specifying 'disabled_reason' with status 'enabled' is invalid.")
    if "forced_down" in body:  # Nova's parameter_types.boolean, read with bool_from_string
        body["forced_down"] = _loaded["forced_down"]
    rpc.call("stratus.conductor.update_service", service_id, body)
    with read_session() as s:
        svc = s.scalars(select(Service).where(Service.uuid == service_id)).first()
        zone = zone_of(s, svc.host)
        return jsonify({"service": _service_body(svc, zone)})


@bp.delete("/os-services/<service_id>")
@enforce("admin_api", name="os_compute_api:os-services:delete")
def delete_service(service_id: str):
    by_uuid = api_version().matches("2.53")
    if not by_uuid and not (service_id.isascii() and service_id.isdigit()):
        raise bad_request(f"Invalid ID {service_id}")
    if not by_uuid and int(service_id) > MAX_INT:  # beyond the id column
        raise not_found(f"Service {service_id} not found.")
    rpc.call("stratus.conductor.delete_service", service_id, by_uuid)
    return "", 204
