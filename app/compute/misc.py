"""/limits and /os-availability-zone."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import func, select

from app.context import current
from app.db import read_session
from app.compute.admin import service_is_up
from app.compute.views import iso_usec
from app.host_zones import effective_zones
from app.models import Instance, QuotaLimit, Service
from app.policy import enforce
from app.settings import get_settings

bp = Blueprint("misc", __name__)


@bp.get("/limits")
@enforce("project_reader_api")
def limits():
    ctx = current()
    cfg = get_settings()
    with read_session() as s:
        overrides = {r.resource: r.hard_limit for r in s.scalars(
            select(QuotaLimit).where(QuotaLimit.project_id == ctx.project_id))}
        used_instances, used_cores, used_ram = s.execute(select(
            func.count(Instance.id), func.coalesce(func.sum(Instance.vcpus), 0),
            func.coalesce(func.sum(Instance.memory_mb), 0)).where(Instance.project_id == ctx.project_id,
                                                                  Instance.deleted == 0)).one()
    absolute = {
        "maxTotalInstances": overrides.get("instances", cfg.quota_instances),
        "maxTotalCores": overrides.get("cores", cfg.quota_cores),
        "maxTotalRAMSize": overrides.get("ram", cfg.quota_ram),
        "maxTotalKeypairs": overrides.get("key_pairs", cfg.quota_key_pairs),
        "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
        "maxServerGroups": 10, "maxServerGroupMembers": 10,
        "totalInstancesUsed": used_instances, "totalCoresUsed": int(used_cores), "totalRAMUsed": int(used_ram),
        "totalServerGroupsUsed": 0,
    }
    return jsonify({"limits": {"rate": [], "absolute": absolute}})


def _zones() -> dict[str, dict[str, list[Service]]]:
    """Zone → host → services; compute hosts are in their (aggregate) zone, other services in 'internal'."""
    with read_session() as s:
        host_zone = effective_zones(s)
        services = list(s.scalars(select(Service).order_by(Service.host, Service.binary)))
    zones: dict[str, dict[str, list[Service]]] = {}
    for svc in services:
        zone = host_zone.get(svc.host, "internal") if svc.binary.endswith("compute") else "internal"
        zones.setdefault(zone, {}).setdefault(svc.host, []).append(svc)
    return zones


def _available(hosts: dict[str, list[Service]]) -> bool:
    return any(not svc.disabled for services in hosts.values() for svc in services)


@bp.get("/os-availability-zone")
@enforce("authenticated", name="os_compute_api:os-availability-zone:list",
         description="List availability zone information without host information")
def availability_zones():
    zones = {z: h for z, h in _zones().items() if z != "internal"}
    return jsonify({"availabilityZoneInfo": [{"zoneName": z, "zoneState": {"available": _available(h)},
                                              "hosts": None} for z, h in sorted(zones.items())]})


@bp.get("/os-availability-zone/detail")
@enforce("admin_api", name="os_compute_api:os-availability-zone:detail",
         description="List detailed availability zone information with host information")
def availability_zones_detail():
    info = []
    for zone, hosts in sorted(_zones().items()):
        info.append({"zoneName": zone, "zoneState": {"available": _available(hosts)}, "hosts": {
            host: {svc.binary: {"available": not svc.disabled, "active": service_is_up(svc),
                                "updated_at": iso_usec(svc.updated_at)} for svc in services}
            for host, services in hosts.items()}})
    return jsonify({"availabilityZoneInfo": info})
