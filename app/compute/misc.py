"""/limits and /os-availability-zone."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.context import current
from app.db import read_session
from app import quota
from app.microversion import current as api_version
from app.models import ComputeNode
from app.policy import check, enforce

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
        check("admin_api")  # Nova's os_compute_api:limits:other_project
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


@bp.get("/os-availability-zone")
@enforce("authenticated")
def availability_zones():
    with read_session() as s:
        zones = sorted(set(s.scalars(select(ComputeNode.availability_zone))))
    return jsonify({"availabilityZoneInfo": [{"zoneName": z, "zoneState": {"available": True}, "hosts": None}
                                             for z in zones]})
