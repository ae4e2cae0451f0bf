"""OpenAPI 3 document of the whole API, built from the live url_map on first request (``GET /openapi.json``).

Request bodies come from the marshmallow schemas that views load and validate their bodies with, declared with
``@body_schema(Schema, root="server")`` (app/request_body.py), and from the server actions' argument schemas
(app/compute/actions.py); a view that declares none takes no body. Routes added by any blueprint appear
automatically. The Compute API is described at one microversion (the newest, or ``?microversion=2.N``): its bodies
and the ``OpenStack-API-Version`` header each operation is sent with. Path parameters, headers, version documents,
responses and links come from app/openapi_tables.py.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify, request
from marshmallow import Schema

from app.auth import PUBLIC_ENDPOINTS
from app.compute.actions import ACTIONS, ARGUMENT_SCHEMAS, ARGUMENT_SINCE, NULLABLE_ARGUMENTS
from app import openapi_tables as tables
from app.microversion import MAX_VERSION, MIN_VERSION, APIVersion
from app.policy import public
from app.request_body import BodySchema, declared_body
from core.errors import ApiError
from core.settings import get_settings

# Bodies of routes whose views are not JSON-object endpoints (endpoint -> (content type, JSON schema)).
_PATCH_PATH = {"type": "string", "pattern": "^/.{1,255}$"}  # a property of the image
SPECIAL_BODIES: dict[str, tuple[str, dict]] = {
    "image.upload_image": ("application/octet-stream", {"type": "string", "format": "binary"}),
    "image.update_image": ("application/openstack-images-v2.1-json-patch", {
        "type": "array", "items": {"oneOf": [
            {"type": "object", "required": ["op", "path", "value"], "properties": {
                "op": {"type": "string", "enum": ["add", "replace"]}, "path": _PATCH_PATH,
                "value": {"type": ["string", "number", "boolean"]}}},
            {"type": "object", "required": ["op", "path"], "properties": {
                "op": {"type": "string", "enum": ["remove"]}, "path": _PATCH_PATH}}]}}),
}
bp = Blueprint("openapi", __name__)
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _schema_ref(spec: APISpec, schema: type[Schema], version: APIVersion) -> dict:
    """The component of ``schema`` as a request at ``version`` may carry it (without its fields gated to a newer
    microversion or removed by an older one)."""
    name = schema.__name__.removesuffix("Schema") or schema.__name__
    absent = [key for key, since in getattr(schema, "gates", {}).items() if not version.matches(since)] + \
        [key for key, until in getattr(schema, "removed", {}).items() if version.matches(until)]
    if absent:
        name = f"{name}_{version}".replace(".", "_")
    if name not in spec.components.schemas:
        by_key = {field.data_key or attr: attr for attr, field in schema._declared_fields.items()}
        spec.components.schema(name, schema=schema(exclude=[by_key[key] for key in absent]) if absent else schema)
        # JSON Schema keywords the schema's own validation enforces and marshmallow cannot name (one action of
        # several: maxProperties 1)
        component = spec.components.schemas[name]
        for key, value in getattr(schema.Meta, "json_schema", {}).items():
            component[key] = sorted({*component.get(key, []), *value}) if key == "required" else value
    return {"$ref": f"#/components/schemas/{name}"}


def _field_keywords(self: Any, field: Any, ret: dict, **kwargs: Any) -> dict:
    """A field's own JSON Schema keywords (``json_schema``, next to the validator enforcing them: a map's key
    pattern, a value of several types)."""
    return dict(getattr(field, "json_schema", {}))


def _declared(spec: APISpec, declared: BodySchema, version: APIVersion) -> dict:
    """The body a view loads at ``version``: the schema it loads with, under its root key."""
    inner = _schema_ref(spec, declared.schema_for(version), version)
    if declared.root is None:
        return inner
    body: dict[str, Any] = {"type": "object", "required": [declared.root], "properties": {declared.root: inner}}
    if declared.siblings is not None or (declared.dialect and declared.dialect.closed_root):
        body["properties"].update({name: {"type": "object"} for name in declared.siblings or ()})
        body["additionalProperties"] = False
    return body


def _action_body(spec: APISpec, version: APIVersion) -> dict:
    props: dict[str, dict] = {}
    for name in sorted(ACTIONS):
        if name not in ARGUMENT_SCHEMAS or not version.matches(ARGUMENT_SINCE.get(name, "2.1")):
            props[name] = {}
        elif name in NULLABLE_ARGUMENTS:
            props[name] = {"anyOf": [_schema_ref(spec, ARGUMENT_SCHEMAS[name], version), {"type": "null"}]}
        else:
            props[name] = _schema_ref(spec, ARGUMENT_SCHEMAS[name], version)
    return {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": props,
            "additionalProperties": False}


def _request_body(spec: APISpec, endpoint: str, view: Callable, version: APIVersion) -> dict | None:
    if endpoint in SPECIAL_BODIES:
        ctype, schema = SPECIAL_BODIES[endpoint]
        # an image's data may be empty (Glance answers 204 all the same)
        return {"required": endpoint != "image.upload_image", "content": {ctype: {"schema": schema}}}
    if endpoint == "servers.server_action":
        schema = _action_body(spec, version)
    elif (declared := declared_body(view)) is not None:
        schema = _declared(spec, declared, version)
    else:
        return None  # the view reads no body
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(endpoint: str, method: str, path: str) -> dict:
    api = tables.api_of(path)
    error = _error(api)
    json_body: dict[str, Any] = {"application/json": {"schema": {}}}
    if endpoint in tables.VERSION_DOCUMENTS:
        json_body = {"application/json": {"schema": {"$ref": "#/components/schemas/VersionDocument"}}}
    success: dict[str, Any] = {"description": "Success"}
    if method not in ("HEAD", "DELETE"):  # a delete answers without a body (Nova's aggregate delete: a bare 200)
        success["content"] = {tables.BINARY_RESPONSES[endpoint]: {"schema": {"type": "string", "format": "binary"}}} \
            if endpoint in tables.BINARY_RESPONSES else json_body
    responses: dict[str, Any] = {
        "2XX": success,
        # an accepted request (a create's answer, or an action's empty one) and no content
        "202": {"description": "Accepted"}, "204": {"description": "No content"},
        # the HTTP server's answer to a request line over its limit (gunicorn's limit_request_line)
        "414": {"description": "URI too long"}}
    if endpoint in tables.EMPTY_CREATED:
        responses["201"] = {"description": "Created (no body)"}
    if (endpoint, path) in tables.MULTIPLE_CHOICES:
        responses["300"] = {"description": "Multiple choices: the API's versions", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Versions"}}}}
    responses.update({str(code): error for code in tables.ERROR_CODES[api]})
    responses["401"] = _error("identity")  # keystonemiddleware's body in front of every API
    return responses


def _error(api: str) -> dict:
    json_error = {"schema": {"$ref": f"#/components/schemas/{tables.ERROR_SCHEMA_OF_API[api]}"}}
    if api == "image":  # Glance answers as webob does, by the request's Accept header
        return {"description": "Error", "content": {"text/html": {"schema": {"type": "string"}},
                                                     "application/json": json_error,
                                                     "text/plain": {"schema": {"type": "string"}}}}
    return {"description": "Error", "content": {"application/json": json_error}}


def _parameters(rule: Any, path: str, version: APIVersion) -> list[dict]:
    params = [{"name": arg, "in": "path", "required": True,
               "schema": tables.path_parameter(arg, rule.endpoint, version)} for arg in _ARG.findall(rule.rule)]
    if path.startswith("/v2.1"):
        params.append({"name": "OpenStack-API-Version", "in": "header", "required": False,
                       "description": "The Compute microversion this document describes (without the header the "
                                      "API answers at 2.1: /openapi.json?microversion=2.1 describes that)",
                       "schema": {"type": "string", "enum": [f"compute {version}"]}})
    if rule.endpoint in tables.SUBJECT_TOKEN_ENDPOINTS:
        params.append({"name": "X-Subject-Token", "in": "header", "required": True,
                       "description": "The token to validate or revoke", "schema": {"type": "string", "minLength": 1}})
    return params


def _operation(spec: APISpec, rule: Any, method: str, path: str, version: APIVersion) -> dict:
    view = current_app.view_functions[rule.endpoint]
    op: dict[str, Any] = {
        "operationId": f"{rule.endpoint}:{method.lower()}:{path}",
        "tags": [tables.api_of(path), rule.endpoint.split(".")[0]],
        "summary": (view.__doc__ or rule.endpoint).strip().splitlines()[0],
        "parameters": _parameters(rule, path, version),
        "responses": _responses(rule.endpoint, method, path),
    }
    if rule.endpoint in PUBLIC_ENDPOINTS:
        op["security"] = []
    if method in ("POST", "PUT", "PATCH") and (body := _request_body(spec, rule.endpoint, view, version)):
        op["requestBody"] = body
    return op


def build(app: Flask, version: APIVersion | None = None, server: str = "/") -> dict:
    """The document of every route, with the Compute bodies and headers of ``version`` (the newest without one)."""
    version = version or APIVersion(*MAX_VERSION)
    plugin = MarshmallowPlugin()
    spec = APISpec(title="Stratus API", version=str(version), openapi_version="3.1.0", plugins=[plugin],
                   info={"description": f"OpenStack Compute v2.1 at microversion {version} (other microversions: "
                                        f"/openapi.json?microversion=2.N), Identity v3 subset (/identity/v3) and "
                                        f"Image v2 subset (/image/v2), Networking v2.0 subset (/networking/v2.0)."},
                   servers=[{"url": server, "description": "Stratus (Compute, Identity, Image and Networking)"}])
    plugin.converter.add_attribute_function(_field_keywords)
    spec.components.security_scheme("token", {"type": "apiKey", "in": "header", "name": "X-Auth-Token"})
    for name, schema in {**tables.ERROR_SCHEMAS, **tables.VERSION_SCHEMAS}.items():
        spec.components.schema(name, schema)
    paths: dict[str, dict] = {}
    with app.app_context():
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            if rule.endpoint == "static" or tables.api_of(rule.rule) == "placement":
                continue  # Placement is its own service, with its own microversions: not described here
            path = _ARG.sub(r"{\1}", rule.rule)
            methods = (rule.methods or set()) - {"OPTIONS"}
            declared = declared_body(app.view_functions[rule.endpoint])
            if declared and declared.since and not version.matches(declared.since):
                continue  # the route appears at a newer microversion
            for method in sorted(methods - {"HEAD"} if "GET" in methods else methods):
                paths.setdefault(path, {})[method.lower()] = _operation(spec, rule, method, path, version)
    tables.links(paths)
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    doc = spec.to_dict()
    doc["security"] = [{"token": []}]
    return doc


def _requested_version() -> APIVersion:
    text = request.args.get("microversion")
    if text is None:
        return APIVersion(*MAX_VERSION)
    match = re.fullmatch(r"2\.(0|[1-9][0-9]*)", text)
    if not match or not MIN_VERSION <= (2, int(match.group(1))) <= MAX_VERSION:
        raise ApiError(400, f"Invalid microversion {text!r}: the document covers 2.1 to {APIVersion(*MAX_VERSION)}.")
    return APIVersion(2, int(match.group(1)))


@bp.get("/openapi.json")
@public
def document():
    """The OpenAPI document of this API (?microversion=2.N: the Compute API at that microversion)."""
    version = _requested_version()
    cache = current_app.extensions.setdefault("stratus_openapi", {})
    if version.t not in cache:
        cache[version.t] = build(current_app, version, get_settings().public_url.rstrip("/") or "/")
    return jsonify(cache[version.t])


def init_app(app: Flask) -> None:
    PUBLIC_ENDPOINTS.add("openapi.document")
    app.register_blueprint(bp)
