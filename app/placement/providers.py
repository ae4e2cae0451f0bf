"""/placement/resource_providers: list (filters name, uuid, member_of, resources, in_tree, required), show, and
create/update/delete of providers added by hand. Compute hosts are providers by themselves (core/placement.py)."""
from __future__ import annotations

import uuid as uuidlib

from flask import Blueprint, Response, jsonify, request

from app.placement import common
from app.placement.microversion import at_least
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_providers", __name__)
_FILTERS = {"name": "1.0", "uuid": "1.0", "member_of": "1.3", "resources": "1.4", "in_tree": "1.14",
            "required": "1.18"}


def list_filters() -> dict:
    """The list's query, parsed with Placement's 400s (filters later than the negotiated version are unknown)."""
    for key in request.args:
        if key not in _FILTERS or not at_least(_FILTERS[key]):
            raise common.bad_request(f"Invalid query string parameters: Additional properties are not allowed "
                                     f"('{key}' was unexpected)")
    out = common.resource_filters()
    if "uuid" in request.args:
        out["uuids"] = [common.uuid_arg(request.args["uuid"])]
    if "in_tree" in request.args:
        out["in_tree"] = common.uuid_arg(request.args["in_tree"], "in_tree")
    if "name" in request.args:
        out["name"] = request.args["name"]
    return out


@bp.get("/resource_providers")
@common.rule("resource_providers:list", "List resource providers")
def list_providers():
    filters = list_filters()
    with read_session() as s:
        for rc in filters.get("resources", {}):
            if not view.resource_class_exists(s, rc):
                raise common.bad_request(f"Invalid resource class in resources parameter: No such resource class "
                                         f"{rc}.")
        for t in sorted(filters["traits"].names()) if "traits" in filters else ():
            if not view.trait_exists(s, t):
                raise common.bad_request(f"No such trait(s): {t}")
        found = view.matching_providers(s, filters.get("resources", {}), **{
            k: filters[k] for k in ("traits", "member_of", "in_tree", "uuids", "name") if k in filters})
        return jsonify({"resource_providers": [common.provider_body(p) for p in found]})


@bp.get("/resource_providers/<uuid>")
@common.rule("resource_providers:show", "Show a resource provider")
def show_provider(uuid: str):
    with read_session() as s:
        return jsonify(common.provider_body(common.provider_or_404(s, uuid)))


def _name_and_parent(data: dict) -> tuple[str, str | None]:
    name = data.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise common.bad_request("JSON does not validate: name must be a string of 1 to 200 characters")
    parent = data.get("parent_provider_uuid")
    if parent is not None:
        common.uuid_arg(parent, "parent_provider_uuid")
    return name, parent


@bp.post("/resource_providers")
@common.rule("resource_providers:create", "Create a resource provider")
def create_provider():
    data = common.json_body()
    common.check_keys(data, {"name", "uuid"} | ({"parent_provider_uuid"} if at_least("1.14") else set()), {"name"})
    name, parent = _name_and_parent(data)
    uuid = common.uuid_arg(data["uuid"]) if data.get("uuid") is not None else str(uuidlib.uuid4())
    uuid = str(uuidlib.UUID(uuid))
    common.call("create_provider", uuid, name, parent)
    with read_session() as s:
        body = common.provider_body(view.provider(s, uuid))
    if at_least("1.20"):
        resp = jsonify(body)
    else:
        resp = Response(status=201)
    resp.headers["Location"] = common.location(f"/resource_providers/{uuid}")
    return resp


@bp.put("/resource_providers/<uuid>")
@common.rule("resource_providers:update", "Update a resource provider")
def update_provider(uuid: str):
    data = common.json_body()
    common.check_keys(data, {"name"} | ({"parent_provider_uuid"} if at_least("1.14") else set()), {"name"})
    name, parent = _name_and_parent(data)
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
    common.call("update_provider", prov.uuid, name, parent if "parent_provider_uuid" in data else prov.parent_uuid)
    with read_session() as s:
        return jsonify(common.provider_body(view.provider(s, prov.uuid)))


@bp.delete("/resource_providers/<uuid>")
@common.rule("resource_providers:delete", "Delete a resource provider")
def delete_provider(uuid: str):
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
    common.call("delete_provider", prov.uuid)
    return Response(status=204)
