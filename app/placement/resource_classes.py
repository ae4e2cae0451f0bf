"""/placement/resource_classes: the standard classes (os-resource-classes) and CUSTOM_* ones."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.placement import common
from app.placement.microversion import at_least, require
from core import placement as view
from core.db import read_session

bp = Blueprint("placement_resource_classes", __name__)


def _body(name: str) -> dict:
    return {"name": name, "links": [{"rel": "self", "href": f"{common.base_url()}/resource_classes/{name}"}]}


def _custom(name: object) -> str:
    if not isinstance(name, str) or not view.CUSTOM_NAME.match(name) or len(name) > 255:
        raise common.bad_request(f"JSON does not validate: {name!r} does not match '^CUSTOM_[A-Z0-9_]+$'")
    return name


@bp.get("/resource_classes")
@common.rule("resource_classes:list", "List resource classes")
def list_classes():
    require("1.2")
    with read_session() as s:
        return jsonify({"resource_classes": [_body(n) for n in view.resource_classes(s)]})


@bp.post("/resource_classes")
@common.rule("resource_classes:create", "Create a custom resource class")
def create_class():
    require("1.2")
    data = common.json_body()
    common.check_keys(data, {"name"}, {"name"})
    name = _custom(data["name"])
    common.call("ensure_resource_class", name, True)
    resp = Response(status=201)
    resp.headers["Location"] = common.location(f"/resource_classes/{name}")
    return resp


@bp.get("/resource_classes/<name>")
@common.rule("resource_classes:show", "Show a resource class")
def show_class(name: str):
    require("1.2")
    with read_session() as s:
        if not view.resource_class_exists(s, name):
            raise common.not_found(f"No such resource class {name}.")
    return jsonify(_body(name))


@bp.put("/resource_classes/<name>")
@common.rule("resource_classes:update", "Create or validate a custom resource class")
def put_class(name: str):
    require("1.7")
    created = common.call("ensure_resource_class", _custom(name), False)
    resp = Response(status=201 if created else 204)
    if created:
        resp.headers["Location"] = common.location(f"/resource_classes/{name}")
    return resp


@bp.delete("/resource_classes/<name>")
@common.rule("resource_classes:delete", "Delete a custom resource class")
def delete_class(name: str):
    require("1.2")
    common.call("delete_resource_class", name)
    return Response(status=204)
