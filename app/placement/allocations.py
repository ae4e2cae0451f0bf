"""Allocations: by consumer (a server's is what its claim holds; during a resize or migration the move's source
is held under the migration's uuid, as Nova's are), by provider; PUT/POST/DELETE for consumers of hand-added
providers, with consumer generations (1.28). A live server's claim is written only by Stratus's conductor."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.context import current
from app.placement import common
from app.placement.microversion import at_least, require
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_allocations", __name__)


def consumer_body(c: view.ConsumerView) -> dict:
    allocations = {}
    for uuid, entry in c.allocations.items():
        allocations[uuid] = {"resources": entry["resources"], "generation": entry["generation"]}
    body: dict = {"allocations": allocations}
    if at_least("1.12") and c.allocations:
        body.update(project_id=c.project_id, user_id=c.user_id)
    if at_least("1.28") and c.allocations:
        body["consumer_generation"] = c.generation
    if at_least("1.38") and c.allocations:
        body["consumer_type"] = c.consumer_type
    return body


@bp.get("/allocations/<consumer>")
@common.rule("allocations:list", "List allocations of a consumer")
def show_allocations(consumer: str):
    common.uuid_arg(consumer, "consumer_uuid")
    with read_session() as s:
        return jsonify(consumer_body(view.consumer_view(s, consumer)))


@bp.get("/resource_providers/<uuid>/allocations")
@common.rule("resource_providers:allocations:list", "List allocations on a resource provider")
def provider_allocations(uuid: str):
    with read_session() as s:
        prov = common.provider_or_404(s, uuid)
        return jsonify({"allocations": view.provider_allocations(s, prov),
                        "resource_provider_generation": prov.generation})


def _item(consumer: str, data: dict) -> dict:
    """One consumer's body (1.12+ dict form; 1.0-1.11 list form) as the conductor's call takes it."""
    keys = {"allocations", "project_id", "user_id"} if at_least("1.8") else {"allocations"}
    if at_least("1.28"):
        keys.add("consumer_generation")
    if at_least("1.38"):
        keys.add("consumer_type")
    required = set(keys) - ({"consumer_generation"} if not at_least("1.28") else set())
    common.check_keys(data, keys, required if at_least("1.8") else {"allocations"})
    raw = data["allocations"]
    allocations: dict[str, dict[str, int]] = {}
    if isinstance(raw, list) and not at_least("1.12"):
        for entry in raw:
            if not isinstance(entry, dict) or "resource_provider" not in entry:
                raise common.bad_request("JSON does not validate: 'resource_provider' is a required property")
            allocations[common.uuid_arg(entry["resource_provider"].get("uuid"))] = entry.get("resources") or {}
    elif isinstance(raw, dict) and at_least("1.12"):
        for uuid, entry in raw.items():
            if not isinstance(entry, dict) or set(entry) - {"resources", "generation"} or "resources" not in entry:
                raise common.bad_request("JSON does not validate: 'resources' is a required property")
            allocations[common.uuid_arg(uuid)] = entry["resources"]
    else:
        raise common.bad_request("JSON does not validate: allocations has the wrong type for this microversion")
    for resources in allocations.values():
        if not isinstance(resources, dict) or not resources or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resources.values()):
            raise common.bad_request("JSON does not validate: resources must map classes to integers >= 1")
    if not allocations and not at_least("1.28"):
        raise common.bad_request("JSON does not validate: allocations must not be empty")
    ctx = current()
    return {"consumer": consumer, "allocations": allocations,
            "project_id": data.get("project_id") or ctx.project_id or "",
            "user_id": data.get("user_id") or ctx.user_id, "consumer_generation": data.get("consumer_generation"),
            "check_generation": at_least("1.28"), "consumer_type": data.get("consumer_type")}


@bp.put("/allocations/<consumer>")
@common.rule("allocations:update", "Replace the allocations of a consumer")
def put_allocations(consumer: str):
    common.uuid_arg(consumer, "consumer_uuid")
    common.call("put_allocations", [_item(consumer, common.json_body())])
    return Response(status=204)


@bp.post("/allocations")
@common.rule("allocations:manage", "Replace the allocations of several consumers")
def post_allocations():
    require("1.13")
    data = common.json_body()
    items = [_item(common.uuid_arg(consumer, "consumer_uuid"), body if isinstance(body, dict) else {})
             for consumer, body in data.items()]
    common.call("put_allocations", items)
    return Response(status=204)


@bp.delete("/allocations/<consumer>")
@common.rule("allocations:delete", "Delete the allocations of a consumer")
def delete_allocations(consumer: str):
    common.uuid_arg(consumer, "consumer_uuid")
    common.call("delete_allocations", consumer)
    return Response(status=204)
