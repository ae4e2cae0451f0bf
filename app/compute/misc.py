"""/limits and /os-availability-zone."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.views import iso_usec
from app.context import current
from app.microversion import current as api_version
from app.policy import authorize, enforce
from app.policy_names import sub_rule
from core import quota
from core.db import read_session
from core.host_zones import effective_zones
from core.models import Service
from core.services import service_is_up

bp = Blueprint("misc", __name__)


# Nova's /limits names for quota resources (views/limits.py) and for their usage.
_LIMIT_NAMES = {"ram": ["maxTotalRAMSize"], "instances": ["maxTotalInstances"], "cores": ["maxTotalCores"],
                "key_pairs": ["maxTotalKeypairs"], "floating_ips": ["maxTotalFloatingIps"],
                "metadata_items": ["maxServerMeta", "maxImageMeta"], "injected_files": ["maxPersonality"],
                "injected_file_content_bytes": ["maxPersonalitySize"], "security_groups": ["maxSecurityGroups"],
                "security_group_rules": ["maxSecurityGroupRules"], "server_groups": ["maxServerGroups"],
                "server_group_members": ["maxServerGroupMembers"]}
_USED_NAMES = {"totalRAMUsed": "ram", "totalCoresUsed": "cores", "totalInstancesUsed": "instances",
               "totalFloatingIpsUsed": "floating_ips", "totalSecurityGroupsUsed": "security_groups",
               "totalServerGroupsUsed": "server_groups"}


@bp.get("/limits")
@enforce("project_reader_api")
def limits():
    ctx = current()
    project_id = ctx.project_id
    if "tenant_id" in request.args:
        project_id = request.args["tenant_id"]
        authorize(sub_rule("limits_other_project"), project_id)
    v = api_version()
    filtered = set(quota.filtered_for_quota_sets(v)) - {"injected_file_path_bytes"}
    with read_session() as s:
        hard = quota.project_limits(s, project_id)
        used = quota.usage(s, project_id)
    absolute: dict[str, int] = {}
    for resource, names in _LIMIT_NAMES.items():
        if resource in filtered:
            continue
        for name in names:
            if name != "maxImageMeta" or not v.matches("2.39"):
                absolute[name] = hard[resource]
    for name, resource in _USED_NAMES.items():
        if resource not in filtered:
            absolute[name] = used[resource]
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
