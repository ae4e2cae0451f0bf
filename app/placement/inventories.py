"""/placement/resource_providers/{uuid}/inventories: read and write. A compute host's VCPU, MEMORY_MB and DISK_GB
inventories are its compute node row, which the claim and the scheduler read: a write changes what they see."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.placement import common
from app.placement.microversion import at_least
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_inventories", __name__)
_FIELDS = {"total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio"}


def _inventory(data: dict) -> dict:
    common.check_keys(data, _FIELDS, {"total"})
    total = common.integer(data, "total", 1)
    inv = {"total": total, "reserved": common.integer(data, "reserved", 0, default=0),
           "min_unit": common.integer(data, "min_unit", 1, default=1),
           "max_unit": common.integer(data, "max_unit", 1, default=view.MAX_INT),
           "step_size": common.integer(data, "step_size", 1, default=1)}
    ratio = data.get("allocation_ratio", 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 3.40282e38:
        raise common.bad_request(f"JSON does not validate: allocation_ratio must be a positive number, got {ratio!r}")
    inv["allocation_ratio"] = float(ratio)
    if inv["reserved"] > total and not (at_least("1.26") and inv["reserved"] == total):
        raise common.bad_request(f"Unable to update inventory: reserved ({inv['reserved']}) is above total "
                                 f"({total}).")
    return inv


def _provider(uuid: str) -> view.Provider:
    with read_session() as s:
        return common.provider_or_404(s, uuid)


@bp.get("/resource_providers/<uuid>/inventories")
@common.rule("resource_providers:inventories:list", "List a resource provider's inventories")
def list_inventories(uuid: str):
    prov = _provider(uuid)
    return jsonify({"inventories": prov.inventories, "resource_provider_generation": prov.generation})


@bp.put("/resource_providers/<uuid>/inventories")
@common.rule("resource_providers:inventories:update", "Replace a resource provider's inventories")
def replace_inventories(uuid: str):
    data = common.json_body()
    common.check_keys(data, {"inventories", "resource_provider_generation"},
                      {"inventories", "resource_provider_generation"})
    if not isinstance(data["inventories"], dict):
        raise common.bad_request("JSON does not validate: inventories must be an object")
    inventories = {rc: _inventory(inv if isinstance(inv, dict) else {}) for rc, inv in data["inventories"].items()}
    prov = _provider(uuid)
    generation = common.call("set_inventories", prov.uuid, common.generation(data), inventories, True)
    return jsonify({"inventories": _provider(uuid).inventories, "resource_provider_generation": generation})


@bp.post("/resource_providers/<uuid>/inventories")
@common.rule("resource_providers:inventories:create", "Create one inventory of a resource provider")
def create_inventory(uuid: str):
    data = common.json_body()
    common.check_keys(data, _FIELDS | {"resource_class", "resource_provider_generation"},
                      {"resource_class", "resource_provider_generation", "total"})
    rc = data["resource_class"]
    inv = _inventory({k: v for k, v in data.items() if k in _FIELDS})
    prov = _provider(uuid)
    if rc in prov.inventories:
        raise common.ApiError(409, f"Update conflict: inventory for {rc} already exists on {uuid}.",
                              error_code="placement.undefined_code")
    common.call("set_inventories", prov.uuid, common.generation(data), {rc: inv}, False)
    resp = jsonify(_provider(uuid).inventories[rc] | {"resource_provider_generation": prov.generation + 1})
    resp.status_code = 201
    resp.headers["Location"] = common.location(f"/resource_providers/{uuid}/inventories/{rc}")
    return resp


@bp.get("/resource_providers/<uuid>/inventories/<rc>")
@common.rule("resource_providers:inventories:show", "Show one inventory of a resource provider")
def show_inventory(uuid: str, rc: str):
    prov = _provider(uuid)
    if rc not in prov.inventories:
        raise common.not_found(f"No inventory of class {rc} for {uuid}")
    return jsonify(prov.inventories[rc] | {"resource_provider_generation": prov.generation})


@bp.put("/resource_providers/<uuid>/inventories/<rc>")
@common.rule("resource_providers:inventories:update", "Replace a resource provider's inventories")
def update_inventory(uuid: str, rc: str):
    data = common.json_body()
    common.check_keys(data, _FIELDS | {"resource_provider_generation"}, {"resource_provider_generation", "total"})
    inv = _inventory({k: v for k, v in data.items() if k in _FIELDS})
    prov = _provider(uuid)
    generation = common.call("set_inventories", prov.uuid, common.generation(data), {rc: inv}, False)
    return jsonify(_provider(uuid).inventories[rc] | {"resource_provider_generation": generation})


@bp.delete("/resource_providers/<uuid>/inventories/<rc>")
@common.rule("resource_providers:inventories:delete", "Delete inventories of a resource provider")
def delete_inventory(uuid: str, rc: str):
    common.call("delete_inventory", _provider(uuid).uuid, rc)
    return Response(status=204)


@bp.delete("/resource_providers/<uuid>/inventories")
@common.rule("resource_providers:inventories:delete", "Delete inventories of a resource provider")
def delete_inventories(uuid: str):
    if not at_least("1.5"):
        raise common.ApiError(405, "The method is not allowed for this resource.",
                              error_code="placement.undefined_code")
    common.call("delete_inventory", _provider(uuid).uuid, None)
    return Response(status=204)
