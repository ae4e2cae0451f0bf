"""/os-hypervisors: the compute nodes, their resources and servers (Nova's shapes by microversion: 2.28 cpu_info,
2.33 paging, 2.53 uuids and the query parameters that replaced /search and /servers, 2.75, 2.88)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute import paging
from app.compute.schemas import is_uuid
from app.compute.views import api_id, instance_name
from app.microversion import current as api_version
from app.policy import enforce
from core.db import read_session
from core.errors import ApiError, bad_request, not_found
from core.models import ComputeNode, Instance
from core.routing import compute_queue
from core.services import service_is_up
from tasks.messaging import rpc

bp = Blueprint("hypervisors", __name__)


def _hypervisor_id(node: ComputeNode) -> object:
    return api_id(node, api_version())


def _hypervisor(node: ComputeNode, detail: bool) -> dict:
    svc = node.service
    body = {"id": _hypervisor_id(node), "hypervisor_hostname": node.hypervisor_hostname,
            "state": "up" if service_is_up(svc) else "down",
            "status": "disabled" if svc.disabled else "enabled"}
    if not detail:
        return body
    body.update({"hypervisor_type": node.hypervisor_type, "hypervisor_version": node.hypervisor_version,
                 "host_ip": node.host_ip, "service": {"host": svc.host, "id": api_id(svc, api_version()),
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


def _page_of_nodes(limit: int, marker: str | None) -> list[ComputeNode]:
    """At most ``limit`` nodes after ``marker`` in id order (Nova's compute_node_get_all_by_pagination), one
    indexed query: the marker is the uuid from 2.53, the integer id before; 400 if no node has it."""
    with read_session() as s:
        query = select(ComputeNode).order_by(ComputeNode.id).limit(limit)
        if marker is not None:
            after = None
            if api_version().matches("2.53"):
                after = s.scalar(select(ComputeNode.id).where(ComputeNode.uuid == marker))
            elif marker.isdigit() and len(marker) < 19:  # a BIGINT at most
                after = s.scalar(select(ComputeNode.id).where(ComputeNode.id == int(marker)))
            if after is None:
                raise bad_request(f"marker [{marker}] not found")
            query = query.where(ComputeNode.id > after)
        return list(s.scalars(query))


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


def _instances_by_host(hosts: list[str] | None = None) -> dict[str, list[dict]]:
    """Host -> its servers' names and uuids; only ``hosts``' when given (a page of hypervisors)."""
    with read_session() as s:
        query = select(Instance.host, Instance.id, Instance.uuid).where(
            Instance.deleted == 0, Instance.host.is_not(None)).order_by(Instance.id)
        rows = s.execute(query if hosts is None else query.where(Instance.host.in_(hosts)))
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
        nodes = _page_of_nodes(limit, marker) if paged else _nodes()
    on_page = [n.host for n in nodes] if paged and pattern is None else None  # at most MAX_LIMIT hosts
    servers = _instances_by_host(on_page) if _with_servers() else None
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
            if "uptime" in body and service_is_up(node.service):  # 2.88; None when the host cannot tell
                body["uptime"] = _uptime(node.host, quiet=True)
            hosted = _instances_by_host().get(node.host, []) if want_servers else []
            if hosted or (want_servers and api_version().matches("2.75")):  # 2.75: always, maybe empty
                body["servers"] = hosted
            return jsonify({"hypervisor": body})
    raise not_found(f"Hypervisor with ID {hypervisor_id} could not be found.")


def _uptime(host: str, quiet: bool = False) -> str | None:
    """The host's ``uptime`` line, asked of its compute worker (Nova's get_host_uptime RPC). ``quiet``: None
    instead of the error (a driver without it, a worker that does not answer), as Nova's 2.88 show view."""
    try:
        return rpc.call("stratus.compute.host_uptime", host, queue=compute_queue(host))
    except ApiError:
        if quiet:
            return None
        raise


@bp.get("/os-hypervisors/<hypervisor_id>/uptime")
@enforce("admin_api", name="os_compute_api:os-hypervisors:uptime")
def hypervisor_uptime(hypervisor_id: str):
    """Before 2.88 (Nova then shows ``uptime`` in the hypervisor's show view and removes this route)."""
    v = api_version()
    if v.matches("2.88"):
        raise not_found("The resource could not be found.")
    missing = f"Hypervisor with ID '{hypervisor_id}' could not be found."
    if v.matches("2.53") and not is_uuid(hypervisor_id):
        raise bad_request(f"Invalid uuid {hypervisor_id}")
    if not v.matches("2.53") and not hypervisor_id.lstrip("-").isdigit():
        raise not_found(missing)
    node = next((n for n in _nodes() if str(_hypervisor_id(n)) == hypervisor_id), None)
    if node is None:
        raise not_found(missing)
    if not service_is_up(node.service):
        raise bad_request(f"Compute service of {node.host} is unavailable at this time.")
    return jsonify({"hypervisor": {**_hypervisor(node, False), "uptime": _uptime(node.host)}})


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
