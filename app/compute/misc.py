"""/limits and /os-availability-zone."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import func, select

from app.context import current
from app.db import read_session
from app.models import ComputeNode, Instance, InstanceGroup, QuotaLimit
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
        used_groups = s.scalar(select(func.count(InstanceGroup.id)).where(InstanceGroup.project_id == ctx.project_id))
    absolute = {
        "maxTotalInstances": overrides.get("instances", cfg.quota_instances),
        "maxTotalCores": overrides.get("cores", cfg.quota_cores),
        "maxTotalRAMSize": overrides.get("ram", cfg.quota_ram),
        "maxTotalKeypairs": overrides.get("key_pairs", cfg.quota_key_pairs),
        "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
        "maxServerGroups": overrides.get("server_groups", cfg.quota_server_groups),
        "maxServerGroupMembers": overrides.get("server_group_members", cfg.quota_server_group_members),
        "totalInstancesUsed": used_instances, "totalCoresUsed": int(used_cores), "totalRAMUsed": int(used_ram),
        "totalServerGroupsUsed": used_groups,
    }
    return jsonify({"limits": {"rate": [], "absolute": absolute}})


@bp.get("/os-availability-zone")
@enforce("authenticated")
def availability_zones():
    with read_session() as s:
        zones = sorted(set(s.scalars(select(ComputeNode.availability_zone))))
    return jsonify({"availabilityZoneInfo": [{"zoneName": z, "zoneState": {"available": True}, "hosts": None}
                                             for z in zones]})
