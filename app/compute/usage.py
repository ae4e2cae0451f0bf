"""os-simple-tenant-usage: instance-hours per project over a period (Nova's arithmetic and shapes)."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, request
from sqlalchemy import or_, select

from app.compute import paging
from app.compute.views import iso_usec
from app.microversion import current as api_version
from app.policy import authorize, checks_inside, enforce, register
from core.db import read_session
from core.errors import bad_request
from core.models import Instance, utcnow

bp = Blueprint("usage", __name__)
register("os_compute_api:os-simple-tenant-usage:show", "project_reader_api", "Show usage statistics for a tenant")
_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")


def _parse_time(name: str, now: dt.datetime) -> dt.datetime:
    raw = request.args.get(name)
    if raw is None:
        return now
    for fmt in _FORMATS:
        try:
            value = dt.datetime.strptime(raw, fmt)
            break
        except ValueError:
            continue
    else:
        try:
            value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"Invalid {name} time. Value: {raw}.") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _period() -> tuple[dt.datetime, dt.datetime]:
    now = utcnow()
    start, stop = _parse_time("start", now), _parse_time("end", now)
    if start > stop:
        raise bad_request("Invalid start time. The start time cannot occur after the end time.")
    return start, stop


def hours_for(launched_at: dt.datetime | None, terminated_at: dt.datetime | None, start: dt.datetime,
              stop: dt.datetime) -> float:
    """Hours an instance ran within [start, stop]; nothing before it launched or after it ended."""
    if launched_at is None or launched_at > stop or (terminated_at is not None and terminated_at < start):
        return 0.0
    began = max(launched_at, start)
    ended = min(stop, terminated_at) if terminated_at is not None else stop
    return max(0.0, (ended - began).total_seconds() / 3600.0)


def _instances(start: dt.datetime, stop: dt.datetime, project_id: str | None) -> list[Instance]:
    q = select(Instance).where(Instance.launched_at.is_not(None), Instance.launched_at <= stop,
                               or_(Instance.terminated_at.is_(None), Instance.terminated_at >= start))
    if project_id is not None:
        q = q.where(Instance.project_id == project_id)
    with read_session() as s:
        return list(s.scalars(q.order_by(Instance.project_id, Instance.id)))


def _server_usage(inst: Instance, hours: float, now: dt.datetime) -> dict:
    flavor = inst.flavor_snapshot or {}
    local_gb = int(flavor.get("disk", inst.root_gb) or 0) + int(flavor.get("ephemeral", 0) or 0)
    ended = inst.terminated_at
    return {"instance_id": inst.uuid, "name": inst.display_name, "hours": hours, "memory_mb": inst.memory_mb,
            "local_gb": local_gb, "vcpus": inst.vcpus, "tenant_id": inst.project_id, "flavor": flavor.get("name"),
            "started_at": iso_usec(inst.launched_at), "ended_at": iso_usec(ended),
            "state": "terminated" if ended is not None else inst.vm_state,
            "uptime": int(((ended or now) - inst.launched_at).total_seconds())}


def _usages(instances: list[Instance], start: dt.datetime, stop: dt.datetime, detailed: bool) -> list[dict]:
    now = utcnow()
    out: dict[str, dict] = {}
    for inst in instances:
        hours = hours_for(inst.launched_at, inst.terminated_at, start, stop)
        usage = _server_usage(inst, hours, now)
        total = out.setdefault(inst.project_id, {
            "tenant_id": inst.project_id, "total_local_gb_usage": 0.0, "total_vcpus_usage": 0.0,
            "total_memory_mb_usage": 0.0, "total_hours": 0.0, "start": iso_usec(start), "stop": iso_usec(stop),
            "server_usages": []})
        total["total_local_gb_usage"] += hours * usage["local_gb"]
        total["total_vcpus_usage"] += hours * usage["vcpus"]
        total["total_memory_mb_usage"] += hours * usage["memory_mb"]
        total["total_hours"] += hours
        total["server_usages"].append(usage)
    if not detailed:
        for total in out.values():
            del total["server_usages"]
    return list(out.values())


def _paged_instances(project_id: str | None, path: str) -> tuple[list[Instance], list[dict], dt.datetime,
                                                                   dt.datetime]:
    """The period's instances, from 2.40 one page of them (limit/marker over instance uuids) with its links."""
    start, stop = _period()
    instances = _instances(start, stop, project_id)
    if not api_version().matches("2.40"):
        return instances, [], start, stop
    limit, marker = paging.limit_and_marker()
    instances = paging.page(instances, lambda i: i.uuid, limit, marker)
    links = paging.next_links(path, instances[-1].uuid if instances else None, len(instances), limit)
    return instances, links, start, stop


@bp.get("/os-simple-tenant-usage")
@enforce("admin_api", name="os_compute_api:os-simple-tenant-usage:list",
         description="List per tenant usage statistics for all tenants")
def list_usage():
    instances, links, start, stop = _paged_instances(None, "os-simple-tenant-usage")
    detailed = request.args.get("detailed", "0").lower() in ("1", "true", "yes")
    body: dict = {"tenant_usages": _usages(instances, start, stop, detailed)}
    if links:
        body["tenant_usages_links"] = links
    return jsonify(body)


@bp.get("/os-simple-tenant-usage/<tenant_id>")
@checks_inside(("os_compute_api:os-simple-tenant-usage:show", "project_reader_api"))
def show_usage(tenant_id: str):
    authorize("os_compute_api:os-simple-tenant-usage:show", tenant_id)
    instances, links, start, stop = _paged_instances(tenant_id, f"os-simple-tenant-usage/{tenant_id}")
    usages = _usages(instances, start, stop, True)
    body: dict = {"tenant_usage": usages[0] if usages else {}}
    if links:
        body["tenant_usage_links"] = links
    return jsonify(body)
