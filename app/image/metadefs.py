"""Metadata definitions (Glance's metadefs), read-only: the namespaces in the directory named by the setting
``metadefs_dir``, one JSON file each in the format Glance ships in etc/metadefs and ``glance-manage
db_load_metadefs`` loads; with none configured the catalog is empty (a valid answer: Horizon's image and flavor
metadata dialogs then offer nothing). Public namespaces are everyone's, private ones their owner's and admins'."""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from pathlib import Path

from flask import Blueprint, jsonify, request

from app.context import current
from app.image.common import iso
from app.policy import enforce
from core.errors import ApiError
from core.settings import get_settings

LOG = logging.getLogger(__name__)
bp = Blueprint("image_metadefs", __name__)
SORT_KEYS = ("namespace", "created_at", "updated_at", "display_name")


@functools.cache
def _catalog(directory: str) -> tuple[dict, ...]:
    """The namespaces of ``directory`` (read once per process), each with its file's time as created/updated."""
    if not directory:
        return ()
    namespaces = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            LOG.warning("metadefs: %s skipped: %s", path, exc)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("namespace"), str):
            LOG.warning("metadefs: %s skipped: not a namespace document", path)
            continue
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).replace(tzinfo=None)
        namespaces.append({**doc, "_time": stamp})
    return tuple(namespaces)


def _visible() -> list[dict]:
    ctx = current()
    return [ns for ns in _catalog(get_settings().metadefs_dir)
            if ns.get("visibility", "private") == "public" or ctx.is_admin
            or (ns.get("owner") is not None and ns.get("owner") == ctx.project_id)]


def _associations(ns: dict) -> list[dict]:
    return [{"name": a["name"], **{k: a[k] for k in ("prefix", "properties_target") if k in a},
             "created_at": iso(ns["_time"]), "updated_at": iso(ns["_time"])}
            for a in ns.get("resource_type_associations") or [] if isinstance(a, dict) and "name" in a]


def namespace_body(ns: dict, full: bool) -> dict:
    name = ns["namespace"]
    body = {"namespace": name, "display_name": ns.get("display_name", name),
            "description": ns.get("description", ""), "visibility": ns.get("visibility", "private"),
            "protected": bool(ns.get("protected", False)), "owner": ns.get("owner", "admin"),
            "created_at": iso(ns["_time"]), "updated_at": iso(ns["_time"]),
            "schema": "/v2/schemas/metadefs/namespace", "self": f"/v2/metadefs/namespaces/{name}"}
    if _associations(ns):
        body["resource_type_associations"] = _associations(ns)
    if full:
        for key in ("properties", "objects", "tags"):
            if ns.get(key):
                body[key] = ns[key]
    return body


def _namespace(name: str) -> dict:
    found = next((ns for ns in _visible() if ns["namespace"] == name), None)
    if found is None:
        raise ApiError(404, f"Metadata definition namespace={name} was not found.")
    return found


@bp.get("/v2/metadefs/namespaces")
@enforce("authenticated", name="get_metadef_namespaces")
def list_namespaces():
    args = request.args
    sort_key, sort_dir = args.get("sort_key", "created_at"), args.get("sort_dir", "desc")
    if sort_key not in SORT_KEYS:
        raise ApiError(400, f"Invalid sort key: {sort_key}. It should be one of the following: "
                            f"{', '.join(SORT_KEYS)}.")
    if sort_dir not in ("asc", "desc"):
        raise ApiError(400, f"Invalid sort direction: {sort_dir}")
    try:
        limit = int(args.get("limit", 25))
    except ValueError:
        raise ApiError(400, "limit param must be an integer") from None
    if limit < 0:
        raise ApiError(400, "limit param must be positive")
    wanted_types = {t for t in args.get("resource_types", "").split(",") if t}
    namespaces = [ns for ns in _visible()
                  if (args.get("visibility") is None or ns.get("visibility", "private") == args["visibility"])
                  and (not wanted_types or wanted_types & {a["name"] for a in _associations(ns)})]
    namespaces.sort(key=lambda ns: (str(namespace_body(ns, False)[sort_key]), ns["namespace"]),
                    reverse=sort_dir == "desc")
    start = 0
    if args.get("marker") is not None:
        names = [ns["namespace"] for ns in namespaces]
        if args["marker"] not in names:
            raise ApiError(404, f"Metadata definition namespace={args['marker']} was not found.")
        start = names.index(args["marker"]) + 1
    page = namespaces[start:start + limit]
    body: dict = {"namespaces": [namespace_body(ns, False) for ns in page], "first": "/v2/metadefs/namespaces",
                  "schema": "/v2/schemas/metadefs/namespaces"}
    if page and start + limit < len(namespaces):
        body["next"] = f"/v2/metadefs/namespaces?marker={page[-1]['namespace']}&limit={limit}"
    return jsonify(body)


@bp.get("/v2/metadefs/namespaces/<namespace>")
@enforce("authenticated", name="get_metadef_namespace")
def show_namespace(namespace):
    return jsonify(namespace_body(_namespace(namespace), True))


@bp.get("/v2/metadefs/namespaces/<namespace>/properties")
@enforce("authenticated", name="list_metadef_properties")
def list_properties(namespace):
    return jsonify({"properties": _namespace(namespace).get("properties") or {}})


@bp.get("/v2/metadefs/namespaces/<namespace>/objects")
@enforce("authenticated", name="get_metadef_objects")
def list_objects(namespace):
    return jsonify({"objects": _namespace(namespace).get("objects") or [],
                    "schema": "/v2/schemas/metadefs/objects"})


@bp.get("/v2/metadefs/namespaces/<namespace>/tags")
@enforce("authenticated", name="get_metadef_tags")
def list_tags(namespace):
    return jsonify({"tags": _namespace(namespace).get("tags") or []})


@bp.get("/v2/metadefs/namespaces/<namespace>/resource_types")
@enforce("authenticated", name="list_metadef_resource_types")
def namespace_resource_types(namespace):
    return jsonify({"resource_type_associations": _associations(_namespace(namespace))})


@bp.get("/v2/metadefs/resource_types")
@enforce("authenticated", name="list_metadef_resource_types")
def list_resource_types():
    seen: dict[str, dict] = {}
    for ns in _visible():
        for assoc in _associations(ns):
            seen.setdefault(assoc["name"], {"name": assoc["name"], "created_at": assoc["created_at"],
                                            "updated_at": assoc["updated_at"]})
    return jsonify({"resource_types": sorted(seen.values(), key=lambda r: r["name"])})


# --- schemas (glance/api/v2/metadef_*.py), as glanceclient and Horizon fetch them --------------------------------

_STRING = {"type": "string"}
_TIMES = {"created_at": {**_STRING, "readOnly": True, "format": "date-time"},
          "updated_at": {**_STRING, "readOnly": True, "format": "date-time"}}
_PROPERTY = {"type": "object", "required": ["title", "type"], "properties": {
    "name": {**_STRING, "maxLength": 80}, "title": _STRING, "description": _STRING,
    "operators": {"type": "array", "items": _STRING},
    "type": {"type": "string", "enum": ["array", "boolean", "integer", "number", "object", "string", None]},
    "readonly": {"type": "boolean"}, "enum": {"type": "array"}, "default": {}}}
_ASSOCIATION = {"type": "object", "required": ["name"], "properties": {
    "name": {**_STRING, "maxLength": 80}, "prefix": {**_STRING, "maxLength": 80},
    "properties_target": {**_STRING, "maxLength": 80}, **_TIMES}}
_OBJECT = {"type": "object", "required": ["name"], "properties": {
    "name": {**_STRING, "maxLength": 80}, "description": _STRING, "required": {"type": "array", "items": _STRING},
    "properties": {"type": "object", "additionalProperties": _PROPERTY}, "schema": {**_STRING, "readOnly": True},
    "self": {**_STRING, "readOnly": True}, **_TIMES}}
_TAG = {"type": "object", "required": ["name"], "properties": {"name": {**_STRING, "maxLength": 255}, **_TIMES}}
_RESOURCE_TYPE = {"type": "object", "required": ["name"], "properties": {"name": {**_STRING, "maxLength": 80},
                                                                        **_TIMES}}
_NAMESPACE = {"type": "object", "required": ["namespace"], "additionalProperties": False, "properties": {
    "namespace": {**_STRING, "maxLength": 80}, "display_name": {**_STRING, "maxLength": 80},
    "description": {**_STRING, "maxLength": 500}, "visibility": {"type": "string", "enum": ["public", "private"]},
    "protected": {"type": "boolean"}, "owner": {**_STRING, "maxLength": 255},
    "resource_type_associations": {"type": "array", "items": _ASSOCIATION},
    "properties": {"type": "object", "additionalProperties": _PROPERTY}, "objects": {"type": "array",
                                                                                   "items": _OBJECT},
    "tags": {"type": "array", "items": _TAG}, "schema": {**_STRING, "readOnly": True},
    "self": {**_STRING, "readOnly": True}, **_TIMES}}


def _one(name: str, schema: dict) -> dict:
    return {"name": name, **schema}


def _many(name: str, key: str, item: dict) -> dict:
    return {"name": name, "properties": {key: {"type": "array", "items": item}, "first": _STRING, "next": _STRING,
                                         "schema": _STRING},
            "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]}


_SCHEMAS = {
    "namespace": _one("namespace", _NAMESPACE), "namespaces": _many("namespaces", "namespaces", _NAMESPACE),
    "resource_type": _one("resource_type_association", _ASSOCIATION),
    "resource_types": _many("resource_type_associations", "resource_type_associations", _ASSOCIATION),
    "object": _one("object", _OBJECT), "objects": _many("objects", "objects", _OBJECT),
    "property": _one("property", {**_PROPERTY, "required": ["name", "title", "type"]}),
    "properties": _many("properties", "properties", _PROPERTY),
    "tag": _one("tag", _TAG), "tags": _many("tags", "tags", _TAG),
}


@bp.get("/v2/schemas/metadefs/<kind>")
@enforce("authenticated")
def metadefs_schema(kind):
    if kind not in _SCHEMAS:
        raise ApiError(404, "The resource could not be found.")
    return jsonify(_SCHEMAS[kind])
