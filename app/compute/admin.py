"""Admin views of the compute fleet: /os-services and /os-hypervisors (Nova's shapes by microversion)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute import paging
from app.compute.schemas import is_uuid, json_body
from app.compute.views import iso_usec
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import bad_request, not_found
from core.host_zones import effective_zones, zone_of
from core.models import ComputeNode, Instance, Service
from core.services import service_is_up
from tasks.messaging import rpc

bp = Blueprint("admin", __name__)


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
        zone = zone_of(s, svc.host)
        return jsonify({"service": _service_body(svc, zone)})


def instance_name(instance_id: int) -> str:
    """Nova's default instance_name_template."""
    return f"instance-{instance_id:08x}"


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
                     "cpu_info": {} if api_version().matches("2.28") else "{}"})  # 2.28: an object
    return body


def _nodes() -> list[ComputeNode]:
    with read_session() as s:
        return list(s.scalars(select(ComputeNode).order_by(ComputeNode.id)))


def _with_servers() -> bool:
    """``with_servers`` (2.53+): Nova's boolean query parameter."""
    raw = request.args.get("with_servers")
    if raw is None:
        return False
    if not api_version().matches("2.53"):
        raise bad_request("Query parameter with_servers is not supported before microversion 2.53.")
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n"):
        raise bad_request(f"Invalid input for query parameters with_servers. Value: {raw}.")
    return value in ("true", "1", "yes", "on", "t", "y")


def _instances_by_host() -> dict[str, list[dict]]:
    with read_session() as s:
        rows = s.execute(select(Instance.host, Instance.id, Instance.uuid).where(
            Instance.deleted == 0, Instance.host.is_not(None)).order_by(Instance.id))
        out: dict[str, list[dict]] = {}
        for host, inst_id, uuid in rows:
            out.setdefault(host, []).append({"name": instance_name(inst_id), "uuid": uuid})
        return out


def _matching(pattern: str) -> list[ComputeNode]:
    nodes = [n for n in _nodes() if pattern in n.hypervisor_hostname]
    if not nodes:
        raise not_found(f"No hypervisor matching '{pattern}' could be found.")
    return nodes


def _listing(detail: bool):
    v = api_version()
    pattern = request.args.get("hypervisor_hostname_pattern")
    paged = v.matches("2.33")
    limit, marker = paging.limit_and_marker() if paged else (paging.MAX_LIMIT, None)
    if pattern is not None:
        if not v.matches("2.53"):
            raise bad_request("Query parameter hypervisor_hostname_pattern is not supported before 2.53.")
        if "limit" in request.args or marker is not None:
            raise bad_request("Paging over hypervisors with the hypervisor_hostname_pattern query parameter is "
                              "not supported.")
        nodes = _matching(pattern)
    else:
        if marker is not None and v.matches("2.53") and not is_uuid(marker):
            raise bad_request(f"Invalid marker {marker}")
        nodes = paging.page(_nodes(), _hypervisor_id, limit, marker) if paged else _nodes()
    servers = _instances_by_host() if _with_servers() else None
    bodies = []
    for n in nodes:
        body = _hypervisor(n, detail)
        if servers is not None and (servers.get(n.host) or v.matches("2.75")):  # 2.75: always, maybe empty
            body["servers"] = servers.get(n.host, [])
        bodies.append(body)
    result: dict = {"hypervisors": bodies}
    links = paging.next_links("os-hypervisors/detail" if detail else "os-hypervisors",
                              bodies[-1]["id"] if bodies else None, len(bodies), limit) if paged else []
    if links and pattern is None:
        result["hypervisors_links"] = links
    return jsonify(result)


@bp.get("/os-hypervisors")
@enforce("admin_api", name="os_compute_api:os-hypervisors:list")
def list_hypervisors():
    return _listing(False)


@bp.get("/os-hypervisors/detail")
@enforce("admin_api", name="os_compute_api:os-hypervisors:list-detail")
def list_hypervisors_detail():
    return _listing(True)


@bp.get("/os-hypervisors/statistics")
@enforce("admin_api", name="os_compute_api:os-hypervisors:statistics")
def hypervisor_statistics():
    if api_version().matches("2.88"):
        raise not_found("The resource could not be found.")
    nodes = _nodes()
    total = {k: sum(getattr(n, k) for n in nodes) for k in ("vcpus", "memory_mb", "local_gb", "vcpus_used",
                                                             "memory_mb_used", "local_gb_used", "running_vms")}
    free_disk = total["local_gb"] - total["local_gb_used"]
    return jsonify({"hypervisor_statistics": {
        "count": len(nodes), **total, "free_ram_mb": total["memory_mb"] - total["memory_mb_used"],
        "free_disk_gb": free_disk, "current_workload": 0, "disk_available_least": free_disk}})


@bp.get("/os-hypervisors/<hypervisor_id>")
@enforce("admin_api", name="os_compute_api:os-hypervisors:show")
def show_hypervisor(hypervisor_id: str):
    want_servers = _with_servers()
    for node in _nodes():
        if str(_hypervisor_id(node)) == hypervisor_id:
            body = _hypervisor(node, True)
            hosted = _instances_by_host().get(node.host, []) if want_servers else []
            if hosted or (want_servers and api_version().matches("2.75")):  # 2.75: always, maybe empty
                body["servers"] = hosted
            return jsonify({"hypervisor": body})
    raise not_found(f"Hypervisor with ID {hypervisor_id} could not be found.")


@bp.get("/os-hypervisors/<pattern>/servers")
@enforce("admin_api", name="os_compute_api:os-hypervisors:servers")
def hypervisor_servers(pattern: str):
    """Hypervisors whose name contains ``pattern``, with their servers (removed at 2.53: use with_servers)."""
    if api_version().matches("2.53"):
        raise not_found("The resource could not be found.")
    nodes = _matching(pattern)
    servers = _instances_by_host()
    return jsonify({"hypervisors": [{**_hypervisor(n, False), **({"servers": servers[n.host]}
                                                                  if servers.get(n.host) else {})}
                                    for n in nodes]})


@bp.get("/os-hypervisors/<pattern>/search")
@enforce("admin_api", name="os_compute_api:os-hypervisors:search")
def search_hypervisors(pattern: str):
    """Hypervisors whose name contains ``pattern`` (removed at 2.53: use hypervisor_hostname_pattern)."""
    if api_version().matches("2.53"):
        raise not_found("The resource could not be found.")
    return jsonify({"hypervisors": [_hypervisor(n, False) for n in _matching(pattern)]})


@bp.delete("/os-services/<service_id>")
@enforce("admin_api", name="os_compute_api:os-services:delete")
def delete_service(service_id: str):
    by_uuid = api_version().matches("2.53")
    if not by_uuid and not service_id.isdigit():
        raise bad_request(f"Invalid ID {service_id}")
    rpc.call("stratus.conductor.delete_service", service_id, by_uuid)
    return "", 204
