"""Usages: a provider's (GET /resource_providers/{uuid}/usages) and a project's or user's totals (GET /usages,
1.9; grouped by consumer type from 1.38). A compute host's usages are the counters its claims move."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.placement import common
from app.placement.microversion import at_least, require
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_usages", __name__)


@bp.get("/resource_providers/<uuid>/usages")
@common.rule("resource_providers:usages", "List a resource provider's usages")
def provider_usages(uuid: str):
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
    usages = {rc: prov.usages.get(rc, 0) for rc in prov.inventories} | {
        rc: n for rc, n in prov.usages.items() if n}
    return jsonify({"usages": usages, "resource_provider_generation": prov.generation})


@bp.get("/usages")
@common.rule("usages", "List a project's or user's total usages")
def project_usages():
    require("1.9")
    allowed = {"project_id", "user_id"} | ({"consumer_type"} if at_least("1.38") else set())
    extra = sorted(set(request.args) - allowed)
    if extra or "project_id" not in request.args:
        raise common.bad_request("Invalid query string parameters: 'project_id' is a required property"
                                 if not extra else f"Invalid query string parameters: '{extra[0]}' was unexpected")
    project, user = request.args["project_id"], request.args.get("user_id")
    with read_session() as s:
        if not at_least("1.38"):
            return jsonify({"usages": view.project_usages(s, project, user)})
        types = [request.args["consumer_type"]] if "consumer_type" in request.args else [
            "INSTANCE", "MIGRATION", "UNKNOWN"]
        out = {}
        for ctype in types:
            totals = view.project_usages(s, project, user, ctype, with_count=True)
            if totals or ctype == "all":
                out[ctype] = totals or {"consumer_count": 0}
        return jsonify({"usages": out})
