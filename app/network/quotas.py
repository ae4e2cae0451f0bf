"""/networking/v2.0/quotas: Neutron's quotas for what Stratus's network has. No project can create a network or
a subnet (limit 0; the built-in ones count for the project that owns them); ports come with servers and are
bounded by the Compute quotas, not by a quota of their own (-1). Limits are not settable here (409)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import func, select

from app.network import common
from app.policy import authorize, checks_inside, enforce
from core.db import plain_rows, read_session
from core.models import FixedIP, Instance

bp = Blueprint("network_quotas", __name__)
LIMITS = {"network": 0, "subnet": 0, "port": -1}
_NOT_SETTABLE = ("Stratus's network quotas are fixed: no network or subnet can be created, and ports come with "
                 "servers (set the Compute quotas: openstack quota set --instances).")


def _used(project_id: str) -> dict[str, int]:
    owns = int(project_id == common.network_owner())
    with read_session() as s:
        ports = plain_rows(s, select(func.count()).select_from(FixedIP)
                           .join(Instance, Instance.uuid == FixedIP.instance_uuid)
                           .where(Instance.project_id == project_id, Instance.deleted == 0)).scalar_one()
    return {"network": owns, "subnet": owns, "port": ports}


@bp.get("/v2.0/quotas")
@enforce("admin_api", name="get_quotas", description="List the projects with quotas of their own (Neutron: "
                                                      "admins only)")
def list_quotas():
    return jsonify({"quotas": []})  # no project has limits of its own


@bp.get("/v2.0/quotas/<project_id>")
@checks_inside(("get_quota", "project_reader_api"))
def show_quota(project_id: str):
    authorize("get_quota", project_id)
    return jsonify({"quota": dict(LIMITS)})


@bp.get("/v2.0/quotas/<project_id>/default")
@checks_inside(("get_quota", "project_reader_api"))
def show_default_quota(project_id: str):
    authorize("get_quota", project_id)
    return jsonify({"quota": dict(LIMITS)})


@bp.get("/v2.0/quotas/<project_id>/details")
@checks_inside(("get_quota", "project_reader_api"))
def show_quota_details(project_id: str):
    authorize("get_quota", project_id)
    used = _used(project_id)
    return jsonify({"quota": {name: {"limit": limit, "used": used[name], "reserved": 0}
                              for name, limit in LIMITS.items()}})


@bp.put("/v2.0/quotas/<project_id>")
@checks_inside(("update_quota", "admin_api"))
def update_quota(project_id: str):
    authorize("update_quota", project_id)
    raise common.unsupported(_NOT_SETTABLE)


@bp.delete("/v2.0/quotas/<project_id>")
@checks_inside(("delete_quota", "admin_api"))
def delete_quota(project_id: str):
    authorize("delete_quota", project_id)
    raise common.unsupported(_NOT_SETTABLE)
