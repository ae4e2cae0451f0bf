"""/os-hosts: Nova's admin host API, removed at 2.43 (404 from there; clients pinned below still call it).

The list names every service's host with its topic and zone (``internal`` for the control services); a compute
host's page shows its totals, its use now, and the flavors of its instances in all and per project. ``status``
enables or disables the host's compute service (the scheduler then avoids it, as ``os-services`` does). No
Stratus driver implements a host maintenance mode or host power actions (nor does Nova's libvirt driver): those
are Nova's 501."""
from __future__ import annotations

from collections import defaultdict

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.body_schemas import HostUpdateSchema
from app.compute.request_body import body_schema, json_body
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import ApiError, bad_request, not_found
from core.host_zones import effective_zones
from core.models import ComputeNode, Instance, Service
from tasks.messaging import rpc

bp = Blueprint("hosts", __name__)

_NOT_SUPPORTED = "The requested functionality is not supported."


def _check_version() -> None:
    if api_version().matches("2.43"):
        raise not_found("The resource could not be found.")


def _compute_node(s, host_name: str) -> ComputeNode:
    node = s.scalars(select(ComputeNode).where(ComputeNode.host == host_name)).first()
    if node is None:
        raise not_found(f"Compute host {host_name} could not be found.")
    return node


@bp.get("/os-hosts")
@enforce("admin_api", name="os_compute_api:os-hosts:list")
def list_hosts():
    _check_version()
    zone = request.args.get("zone")
    with read_session() as s:
        zones = effective_zones(s)
        services = s.scalars(select(Service).order_by(Service.id)).all()
        hosts = [{"host_name": svc.host, "service": svc.topic,
                  "zone": (zones.get(svc.host) or "nova") if svc.topic == "compute" else "internal"}
                 for svc in services]
    return jsonify({"hosts": [h for h in hosts if zone is None or h["zone"] == zone]})


def _resource(host: str, project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict:
    return {"resource": {"host": host, "project": project, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}}


@bp.get("/os-hosts/<host_name>")
@enforce("admin_api", name="os_compute_api:os-hosts:show")
def show_host(host_name: str):
    _check_version()
    with read_session() as s:
        node = _compute_node(s, host_name)
        instances = s.scalars(select(Instance).where(Instance.host == host_name, Instance.deleted == 0)
                              .order_by(Instance.id)).all()
        used: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # project -> cpu, memory, disk (in order)
        for inst in instances:
            disk = (inst.root_gb or 0) + int((inst.flavor_snapshot or {}).get("ephemeral") or 0)
            for key in ("(used_max)", inst.project_id):
                used[key][0] += inst.vcpus
                used[key][1] += inst.memory_mb
                used[key][2] += disk
        resources = [_resource(host_name, "(total)", node.vcpus, node.memory_mb, node.local_gb),
                     _resource(host_name, "(used_now)", node.vcpus_used, node.memory_mb_used, node.local_gb_used),
                     _resource(host_name, "(used_max)", *used.pop("(used_max)", [0, 0, 0]))]
        resources += [_resource(host_name, project, *totals) for project, totals in used.items()]
    return jsonify({"host": resources})


def _enabled(body: dict, key: str) -> bool | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, str) or value.strip().lower() not in ("enable", "disable"):
        raise bad_request(f"Invalid input for field/attribute {key}. Value: {value!r}. {value!r} is not one of "
                          f"['enable', 'disable']")
    return value.strip().lower() == "enable"


@bp.put("/os-hosts/<host_name>")
@enforce("admin_api", name="os_compute_api:os-hosts:update")
@body_schema(HostUpdateSchema)
def update_host(_loaded: dict, host_name: str):
    _check_version()
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"status", "maintenance_mode"}:
        raise bad_request(f"Invalid input for field/attribute host. Value: {body!r}. Additional properties are "
                          f"not allowed")
    if not body:
        raise bad_request("Invalid input for field/attribute host. Value: {}. {} does not have enough properties")
    status, maintenance = _enabled(body, "status"), _enabled(body, "maintenance_mode")
    with read_session() as s:
        node = _compute_node(s, host_name)
        service_uuid = s.scalar(select(Service.uuid).where(Service.id == node.service_id))
    if maintenance is not None:
        raise ApiError(501, _NOT_SUPPORTED)
    rpc.call("stratus.conductor.update_service", service_uuid, {"status": "enabled" if status else "disabled"})
    return jsonify({"host": host_name, "status": "enabled" if status else "disabled"})


def _power_action(host_name: str) -> None:
    _check_version()
    with read_session() as s:
        _compute_node(s, host_name)
    raise ApiError(501, _NOT_SUPPORTED)


@bp.get("/os-hosts/<host_name>/startup")
@enforce("admin_api", name="os_compute_api:os-hosts:start")
def startup_host(host_name: str):
    _power_action(host_name)


@bp.get("/os-hosts/<host_name>/shutdown")
@enforce("admin_api", name="os_compute_api:os-hosts:shutdown")
def shutdown_host(host_name: str):
    _power_action(host_name)


@bp.get("/os-hosts/<host_name>/reboot")
@enforce("admin_api", name="os_compute_api:os-hosts:reboot")
def reboot_host(host_name: str):
    _power_action(host_name)
