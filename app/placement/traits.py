"""/placement/traits (1.6): standard traits (os-traits) and CUSTOM_* ones; a provider's traits. Compute hosts'
traits are what their drivers report plus what operators set."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.placement import common
from app.placement.microversion import require
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_traits", __name__)


@bp.get("/traits")
@common.rule("traits:list", "List traits")
def list_traits():
    require("1.6")
    name = request.args.get("name")
    with read_session() as s:
        found = view.traits(s)
        if name:
            if name.startswith("in:"):
                names = set(name[3:].split(","))
                found = [t for t in found if t in names]
            elif name.startswith("startswith:"):
                found = [t for t in found if t.startswith(name[len("startswith:"):])]
            else:
                raise common.bad_request(f"Badly formatted name parameter. Expected name query string parameter in "
                                         f"form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{name}\"")
        if request.args.get("associated") in ("true", "false"):
            used = {t for ts in view.traits_of(s, view.providers(s)).values() for t in ts}
            want = request.args["associated"] == "true"
            found = [t for t in found if (t in used) == want]
    return jsonify({"traits": found})


@bp.get("/traits/<name>")
@common.rule("traits:show", "Show a trait")
def show_trait(name: str):
    require("1.6")
    with read_session() as s:
        if not view.trait_exists(s, name):
            raise common.not_found(f"No such trait(s): {name}.")
    return Response(status=204)


@bp.put("/traits/<name>")
@common.rule("traits:update", "Create a custom trait")
def put_trait(name: str):
    require("1.6")
    if not view.CUSTOM_NAME.match(name) or len(name) > 255:
        raise common.bad_request(f"The trait is invalid. A valid trait must be no longer than 255 characters, start "
                                 f"with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" "
                                 f"and \"_\"")
    created = common.call("ensure_trait", name)
    resp = Response(status=201 if created else 204)
    resp.headers["Location"] = common.location(f"/traits/{name}")
    return resp


@bp.delete("/traits/<name>")
@common.rule("traits:delete", "Delete a custom trait")
def delete_trait(name: str):
    require("1.6")
    common.call("delete_trait", name)
    return Response(status=204)


@bp.get("/resource_providers/<uuid>/traits")
@common.rule("resource_providers:traits:list", "List a resource provider's traits")
def provider_traits(uuid: str):
    require("1.6")
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
        return jsonify({"traits": view.traits_of(s, [prov])[prov.uuid],
                        "resource_provider_generation": prov.generation})


@bp.put("/resource_providers/<uuid>/traits")
@common.rule("resource_providers:traits:update", "Replace a resource provider's traits")
def set_provider_traits(uuid: str):
    require("1.6")
    data = common.json_body()
    common.check_keys(data, {"traits", "resource_provider_generation"}, {"traits", "resource_provider_generation"})
    traits = data["traits"]
    if not isinstance(traits, list) or not all(isinstance(t, str) for t in traits):
        raise common.bad_request("JSON does not validate: traits must be a list of strings")
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
    generation = common.call("set_provider_traits", prov.uuid, common.generation(data), traits)
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
        return jsonify({"traits": view.traits_of(s, [prov])[prov.uuid],
                        "resource_provider_generation": generation})


@bp.delete("/resource_providers/<uuid>/traits")
@common.rule("resource_providers:traits:delete", "Delete a resource provider's traits")
def delete_provider_traits(uuid: str):
    require("1.6")
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
    common.call("set_provider_traits", prov.uuid, None, [])
    return Response(status=204)
