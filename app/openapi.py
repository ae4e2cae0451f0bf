"""OpenAPI 3 document of the whole API, built from the live url_map on first request (``GET /openapi.json``).

Request bodies come from the marshmallow schemas that views load their bodies with, declared with
``@body_schema(Schema, root="server")`` (app/compute/request_body.py), and from the server actions' argument
schemas (app/compute/actions.py); routes without one get a generic JSON object. Routes added by any blueprint
appear automatically. Responses list the success range and the error codes with each API's error body.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify
from marshmallow import Schema

from app.auth import PUBLIC_ENDPOINTS
from app.compute.actions import ACTIONS, ARGUMENT_SCHEMAS
from app.compute.request_body import BodySchema, declared_body
from app.microversion import MAX_VERSION, fmt
from app.policy import public

# Bodies of routes whose views are not JSON-object endpoints (endpoint -> (content type, JSON schema)).
SPECIAL_BODIES: dict[str, tuple[str, dict]] = {
    "image.upload_image": ("application/octet-stream", {"type": "string", "format": "binary"}),
    "image.update_image": ("application/openstack-images-v2.1-json-patch", {
        "type": "array", "items": {"type": "object", "required": ["op", "path"], "properties": {
            "op": {"type": "string", "enum": ["add", "replace", "remove"]}, "path": {"type": "string"},
            "value": {}}}}),
}
bp = Blueprint("openapi", __name__)
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 415)
_ERROR_SCHEMAS = {
    "ComputeFault": {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}},
    "IdentityError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "title"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "title": {"type": "string"}}}}},
    # webob's JSON error (Glance): ``code`` is the status line ("404 Not Found").
    "ImageError": {"type": "object", "required": ["code", "message", "title"],
                   "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                  "title": {"type": "string"}}},
}


def _schema_ref(spec: APISpec, schema: type[Schema]) -> dict:
    name = schema.__name__.removesuffix("Schema") or schema.__name__
    if name not in spec.components.schemas:
        spec.components.schema(name, schema=schema)
    return {"$ref": f"#/components/schemas/{name}"}


def _declared(spec: APISpec, declared: BodySchema) -> dict:
    """The body a view loads: its schema (one of them when the microversion picks), under its root key."""
    refs = [_schema_ref(spec, schema) for schema in declared.schemas()]
    inner = refs[0] if len(refs) == 1 else {"oneOf": refs}
    if declared.root is None:
        return inner
    body: dict[str, Any] = {"type": "object", "required": [declared.root], "properties": {declared.root: inner}}
    if declared.siblings is not None:
        body["properties"].update({name: {"type": "object"} for name in declared.siblings})
        body["additionalProperties"] = False
    return body


def _action_body(spec: APISpec) -> dict:
    props = {name: (_schema_ref(spec, ARGUMENT_SCHEMAS[name]) if name in ARGUMENT_SCHEMAS else {})
             for name in sorted(ACTIONS)}
    return {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": props,
            "additionalProperties": False}


def _request_body(spec: APISpec, endpoint: str, view: Callable) -> dict | None:
    if endpoint in SPECIAL_BODIES:
        ctype, schema = SPECIAL_BODIES[endpoint]
        return {"required": True, "content": {ctype: {"schema": schema}}}
    if endpoint == "servers.server_action":
        schema = _action_body(spec)
    elif (declared := declared_body(view)) is not None:
        schema = _declared(spec, declared)
    else:
        schema = {"type": "object"}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _error_schema(path: str) -> str:
    if path.startswith("/identity"):
        return "IdentityError"
    if path.startswith("/image"):
        return "ImageError"
    return "ComputeFault"


def _error(path: str) -> dict:
    json_error = {"schema": {"$ref": f"#/components/schemas/{_error_schema(path)}"}}
    if path.startswith("/image"):  # Glance answers as webob does, by the request's Accept header
        return {"description": "Error", "content": {"text/html": {"schema": {"type": "string"}},
                                                     "application/json": json_error,
                                                     "text/plain": {"schema": {"type": "string"}}}}
    return {"description": "Error", "content": {"application/json": json_error}}


def _operation(spec: APISpec, rule: Any, method: str, path: str) -> dict:
    view = current_app.view_functions[rule.endpoint]
    responses: dict[str, Any] = {"2XX": {"description": "Success"}}
    responses.update({str(code): _error(path) for code in _ERROR_CODES})
    responses["401"] = _error("/identity")  # keystonemiddleware's body in front of every API
    op: dict[str, Any] = {
        "operationId": f"{rule.endpoint}:{method.lower()}:{path}",
        "tags": [rule.endpoint.split(".")[0]],
        "summary": (view.__doc__ or rule.endpoint).strip().splitlines()[0],
        "parameters": [{"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
                       for arg in _ARG.findall(rule.rule)],
        "responses": responses,
    }
    if rule.endpoint in PUBLIC_ENDPOINTS:
        op["security"] = []
    if method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = _request_body(spec, rule.endpoint, view)
    return op


def build(app: Flask) -> dict:
    spec = APISpec(title="Stratus API", version=fmt(MAX_VERSION), openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "OpenStack Compute v2.1, Identity v3 subset and Image v2 subset."})
    spec.components.security_scheme("token", {"type": "apiKey", "in": "header", "name": "X-Auth-Token"})
    for name, schema in _ERROR_SCHEMAS.items():
        spec.components.schema(name, schema)
    paths: dict[str, dict] = {}
    with app.app_context():
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            if rule.endpoint == "static":
                continue
            path = _ARG.sub(r"{\1}", rule.rule)
            methods = (rule.methods or set()) - {"OPTIONS"}
            for method in sorted(methods - {"HEAD"} if "GET" in methods else methods):
                paths.setdefault(path, {})[method.lower()] = _operation(spec, rule, method, path)
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    doc = spec.to_dict()
    doc["security"] = [{"token": []}]
    return doc


@bp.get("/openapi.json")
@public
def document():
    """The OpenAPI document of this API."""
    doc = current_app.extensions.get("stratus_openapi")
    if doc is None:
        doc = current_app.extensions["stratus_openapi"] = build(current_app)
    return jsonify(doc)


def init_app(app: Flask) -> None:
    PUBLIC_ENDPOINTS.add("openapi.document")
    app.register_blueprint(bp)
