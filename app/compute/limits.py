"""/limits: the project's quota limits and usage as Nova's limits view names them (rate limits are empty)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.context import current
from app.microversion import current as api_version
from app.policy import authorize, enforce
from app.policy_names import sub_rule
from core import quota
from core.db import read_session

bp = Blueprint("limits", __name__)


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
def show_limits():
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
