"""/os-aggregates: host aggregates and availability zones (Nova's API, shapes by microversion)."""
from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from app.compute.body_schemas import (AggregateActionSchema, AggregateCreateSchema, AggregateUpdateSchema,
                                      CacheImagesSchema)
from app.compute.request_body import body_schema, json_body
from app.compute.schemas import is_uuid
from app.compute.views import iso_usec
from app.microversion import current as api_version
from app.policy import authorize, checks_inside, enforce, register
from core.db import read_session
from core.errors import bad_request, not_found
from core.host_zones import AZ_KEY
from core.models import Aggregate, Image
from core.routing import compute_queue
from tasks.conductor.specs import image_message
from tasks.messaging import rpc

bp = Blueprint("aggregates", __name__)
_META_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")
_P = "os_compute_api:os-aggregates"
for _action, _doc in (("add_host", "Add a host to an aggregate"), ("remove_host", "Remove a host from an aggregate"),
                      ("set_metadata", "Create or replace metadata for an aggregate")):
    register(f"{_P}:{_action}", "admin_api", _doc)


def aggregate_body(agg: Aggregate, with_members: bool = True) -> dict:
    metadata = {m.key: m.value for m in agg.metadata_items}
    body = {"availability_zone": metadata.get(AZ_KEY), "created_at": iso_usec(agg.created_at), "deleted": False,
            "deleted_at": None, "id": agg.id, "name": agg.name, "updated_at": iso_usec(agg.updated_at)}
    if with_members:
        body["hosts"] = [h.host for h in agg.hosts]
        body["metadata"] = metadata
    if api_version().matches("2.41"):
        body["uuid"] = agg.uuid
    return body


def _get(aggregate_id: str | int) -> Aggregate:
    with read_session() as s:
        agg = s.get(Aggregate, int(aggregate_id))
        if agg is None:
            raise not_found(f"Aggregate {aggregate_id} could not be found.")
        return agg


_DB_INT = range(-2 ** 31, 2 ** 31)


def _id(aggregate_id: str) -> int:
    """Nova's validate_integer: any integer (a negative one too) is an id, unknown ones are 404s; digits int()
    would read beyond ASCII ("\u0663") are not an id."""
    try:
        value = int(aggregate_id) if aggregate_id.isascii() else None
    except ValueError:
        value = None
    if value is None:
        raise bad_request("Invalid input received: id must be an integer")
    if value not in _DB_INT:  # no such row, and the database would refuse to compare with it
        raise not_found(f"Aggregate {aggregate_id} could not be found.")
    return value


@bp.get("/os-aggregates")
@enforce("admin_api", name=f"{_P}:index", description="List all aggregates")
def list_aggregates():
    with read_session() as s:
        rows = list(s.scalars(select(Aggregate).order_by(Aggregate.id)))
        return jsonify({"aggregates": [aggregate_body(a) for a in rows]})


@bp.post("/os-aggregates")
@enforce("admin_api", name=f"{_P}:create", description="Create an aggregate")
@body_schema(AggregateCreateSchema, root="aggregate")
def create_aggregate(body: dict):
    agg_id = rpc.call("stratus.conductor.create_aggregate", body["name"], body.get("availability_zone"))
    return jsonify({"aggregate": aggregate_body(_get(agg_id), with_members=False)})


@bp.get("/os-aggregates/<aggregate_id>")
@enforce("admin_api", name=f"{_P}:show", description="Show details for an aggregate")
def show_aggregate(aggregate_id: str):
    return jsonify({"aggregate": aggregate_body(_get(_id(aggregate_id)))})


@bp.put("/os-aggregates/<aggregate_id>")
@enforce("admin_api", name=f"{_P}:update", description="Update name and/or availability zone of an aggregate")
@body_schema(AggregateUpdateSchema, root="aggregate")
def update_aggregate(body: dict, aggregate_id: str):
    agg_id = _id(aggregate_id)
    if not body:
        raise bad_request("Invalid input for field/attribute aggregate. Value: {}. {} does not have enough "
                          "properties")
    rpc.call("stratus.conductor.update_aggregate", agg_id, body)
    return jsonify({"aggregate": aggregate_body(_get(agg_id))})


@bp.delete("/os-aggregates/<aggregate_id>")
@enforce("admin_api", name=f"{_P}:delete", description="Delete an aggregate")
def delete_aggregate(aggregate_id: str):
    rpc.call("stratus.conductor.delete_aggregate", _id(aggregate_id))
    resp = Response(status=200)
    del resp.headers["Content-Type"]  # Nova's 200 has no body, so no media type
    return resp


def _metadata_arg(args: object) -> dict:
    if not isinstance(args, dict) or set(args) != {"metadata"} or not isinstance(args["metadata"], dict):
        raise bad_request("Invalid input for field/attribute set_metadata. 'metadata' is a required property")
    metadata = args["metadata"]
    for key, value in metadata.items():
        if not _META_KEY.match(key):
            raise bad_request(f"Invalid input for field/attribute metadata. Value: {key}. Keys must be 1 to 255 "
                              f"characters of letters, digits, space and -_:.")
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise bad_request(f"Invalid input for field/attribute {key}. Value: {value!r}. It must be a string "
                              f"of at most 255 characters or null.")
    return metadata


@bp.post("/os-aggregates/<aggregate_id>/action")
@checks_inside(*((f"{_P}:{a}", "admin_api") for a in ("add_host", "remove_host", "set_metadata")))
@body_schema(AggregateActionSchema)
def aggregate_action(loaded: dict, aggregate_id: str):
    data = json_body()
    if len(data) != 1:
        raise bad_request("Invalid aggregate action: exactly one action is required.")
    action, args = next(iter(data.items()))
    if action not in ("add_host", "remove_host", "set_metadata"):
        raise bad_request(f"Invalid input for field/attribute {action}. Additional properties are not allowed "
                          f"('{action}' was unexpected)")
    authorize(f"{_P}:{action}")  # Nova checks the policy before the id
    agg_id = _id(aggregate_id)
    if action == "add_host":
        rpc.call("stratus.conductor.aggregate_add_host", agg_id, loaded[action]["host"])
    elif action == "remove_host":
        rpc.call("stratus.conductor.aggregate_remove_host", agg_id, loaded[action]["host"])
    else:
        rpc.call("stratus.conductor.set_aggregate_metadata", agg_id, _metadata_arg(args))
    return jsonify({"aggregate": aggregate_body(_get(agg_id))})


@bp.post("/os-aggregates/<aggregate_id>/images")
@enforce("admin_api", name="compute:aggregates:images", description="Request image caching for an aggregate")
@body_schema(CacheImagesSchema, since="2.81")
def cache_aggregate_images(_loaded: dict, aggregate_id: str):
    """2.81: ask every host of the aggregate to pre-cache the images; 202, the hosts work in the background."""
    if not api_version().matches("2.81"):
        raise not_found("The resource could not be found.")
    agg_id = _id(aggregate_id)
    body = json_body()
    cache = body.get("cache") if isinstance(body, dict) and set(body) == {"cache"} else None
    if not isinstance(cache, list) or not cache or any(
            not isinstance(item, dict) or set(item) != {"id"} or not is_uuid(item["id"]) for item in cache):
        raise bad_request("Invalid input for field/attribute cache. It must be a non-empty list of "
                          "{\"id\": <image uuid>} objects.")
    image_ids = [item["id"] for item in cache]
    if len(set(image_ids)) != len(image_ids):
        raise bad_request("Duplicate images in request")
    with read_session() as s:
        agg = s.get(Aggregate, agg_id)
        if agg is None:
            raise not_found(f"Aggregate {aggregate_id} could not be found.")
        hosts = [h.host for h in agg.hosts]
        known = set(s.scalars(select(Image.id).where(Image.id.in_(image_ids))))
        missing = [i for i in image_ids if i not in known]
        if missing:
            raise bad_request(f"Image {missing[0]} could not be found.")
        # compute hosts read no DB: each image goes as the driver needs it (tasks/conductor/specs.py)
        images = [image_message(s, i) for i in image_ids]
    for host in hosts:
        rpc.cast("stratus.compute.cache_images", host, images, queue=compute_queue(host))
    return "", 202

