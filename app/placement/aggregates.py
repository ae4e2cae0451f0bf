"""/placement/resource_providers/{uuid}/aggregates (1.1; generation from 1.19). A compute host's aggregates are
Stratus's host aggregates it is in: setting them makes the host join and leave those host aggregates."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.placement import common
from app.placement.microversion import at_least, require
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_aggregates", __name__)


def _body(uuid: str) -> dict:
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
        body: dict = {"aggregates": view.aggregates_of(s, [prov])[prov.uuid]}
    if at_least("1.19"):
        body["resource_provider_generation"] = prov.generation
    return body


@bp.get("/resource_providers/<uuid>/aggregates")
@common.rule("resource_providers:aggregates:list", "List a resource provider's aggregates")
def list_aggregates(uuid: str):
    require("1.1")
    return jsonify(_body(uuid))


@bp.put("/resource_providers/<uuid>/aggregates")
@common.rule("resource_providers:aggregates:update", "Replace a resource provider's aggregates")
def set_aggregates(uuid: str):
    require("1.1")
    data = common.json_body() if at_least("1.19") else {"aggregates": _list_body()}
    common.check_keys(data, {"aggregates", "resource_provider_generation"} if at_least("1.19") else {"aggregates"},
                      {"aggregates", "resource_provider_generation"} if at_least("1.19") else {"aggregates"})
    aggregates = data["aggregates"]
    if not isinstance(aggregates, list):
        raise common.bad_request("JSON does not validate: aggregates must be a list of uuids")
    aggregates = [common.uuid_arg(a, "aggregate") for a in aggregates]
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
    generation = common.generation(data) if at_least("1.19") else None
    common.call("set_provider_aggregates", prov.uuid, generation, aggregates)
    return jsonify(_body(uuid))


def _list_body() -> list:
    data = request.get_json(silent=True)
    if not isinstance(data, list):
        raise common.bad_request("JSON does not validate: the body must be a list of aggregate uuids")
    return data
