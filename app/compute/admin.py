"""Admin views of the compute fleet: /os-services and /os-hypervisors (Nova's shapes by microversion)."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app import rpc
from app.compute.schemas import is_uuid, json_body
from app.compute.views import iso_usec
from app.db import read_session
from app.errors import bad_request, not_found
from app.microversion import current as api_version
from app.models import ComputeNode, Service, utcnow
from app.policy import enforce
from app.settings import get_settings

bp = Blueprint("admin", __name__)


def service_is_up(svc: Service, now: dt.datetime | None = None) -> bool:
    cutoff = (now or utcnow()) - dt.timedelta(seconds=get_settings().service_down_time)
    return not svc.forced_down and svc.last_seen_at is not None and svc.last_seen_at >= cutoff


def _service_id(svc: Service) -> object:
    return svc.uuid if api_version().matches("2.53") else svc.id


def _service_body(svc: Service, zone: str | None) -> dict:
    body = {"id": _service_id(svc), "binary": svc.binary, "host": svc.host, "zone": zone or "internal",
            "status": "disabled" if svc.disabled else "enabled", "state": "up" if service_is_up(svc) else "down",
            "updated_at": iso_usec(svc.updated_at), "disabled_reason": svc.disabled_reason}
    if api_version().matches("2.11"):
        body["forced_down"] = bool(svc.forced_down)
    return body


@bp.get("/os-services")
@enforce("admin_api")
def list_services():
    with read_session() as s:
        zones = dict(s.execute(select(ComputeNode.service_id, ComputeNode.availability_zone)).all())
        q = select(Service).order_by(Service.id)
        if request.args.get("host"):
            q = q.where(Service.host == request.args["host"])
        if request.args.get("binary"):
            q = q.where(Service.binary == request.args["binary"])
        rows = s.scalars(q)
        return jsonify({"services": [_service_body(svc, zones.get(svc.id)) for svc in rows]})


@bp.put("/os-services/<service_id>")
@enforce("admin_api")
def update_service(service_id: str):
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
    if "forced_down" in body and not isinstance(body["forced_down"], bool):
        raise bad_request(f"Invalid input for field/attribute forced_down. Value: {body['forced_down']}.")
    rpc.call("stratus.conductor.update_service", service_id, body)
    with read_session() as s:
        svc = s.scalars(select(Service).where(Service.uuid == service_id)).first()
        zone = s.scalar(select(ComputeNode.availability_zone).where(ComputeNode.service_id == svc.id))
        return jsonify({"service": _service_body(svc, zone)})


def _hypervisor_id(node: ComputeNode) -> object:
    return node.uuid if api_version().matches("2.53") else node.id


def _hypervisor(node: ComputeNode, detail: bool) -> dict:
    svc = node.service
    body = {"id": _hypervisor_id(node), "hypervisor_hostname": node.hypervisor_hostname,
            "state": "up" if service_is_up(svc) else "down",
            "status": "disabled" if svc.disabled else "enabled"}
    if not detail:
        return body
    body.update({"hypervisor_type": node.hypervisor_type, "hypervisor_version": node.hypervisor_version,
                 "host_ip": node.host_ip, "service": {"host": svc.host, "id": _service_id(svc),
                                                      "disabled_reason": svc.disabled_reason}})
    if api_version().matches("2.88"):
        body["uptime"] = None
    else:
        free_ram = node.memory_mb - node.memory_mb_used
        free_disk = node.local_gb - node.local_gb_used
        body.update({"vcpus": node.vcpus, "memory_mb": node.memory_mb, "local_gb": node.local_gb,
                     "vcpus_used": node.vcpus_used, "memory_mb_used": node.memory_mb_used,
                     "local_gb_used": node.local_gb_used, "free_ram_mb": free_ram, "free_disk_gb": free_disk,
                     "current_workload": 0, "running_vms": node.running_vms, "disk_available_least": free_disk,
                     "cpu_info": "{}"})
    return body


def _nodes() -> list[ComputeNode]:
    with read_session() as s:
        return list(s.scalars(select(ComputeNode).order_by(ComputeNode.id)))


@bp.get("/os-hypervisors")
@enforce("admin_api")
def list_hypervisors():
    return jsonify({"hypervisors": [_hypervisor(n, False) for n in _nodes()]})


@bp.get("/os-hypervisors/detail")
@enforce("admin_api")
def list_hypervisors_detail():
    return jsonify({"hypervisors": [_hypervisor(n, True) for n in _nodes()]})


@bp.get("/os-hypervisors/<hypervisor_id>")
@enforce("admin_api")
def show_hypervisor(hypervisor_id: str):
    for node in _nodes():
        if str(_hypervisor_id(node)) == hypervisor_id:
            return jsonify({"hypervisor": _hypervisor(node, True)})
    raise not_found(f"Hypervisor with ID {hypervisor_id} could not be found.")
