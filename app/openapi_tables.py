"""What the OpenAPI document (app/openapi.py) says beyond the url_map and the views' body schemas: the types of
path parameters, the headers an operation needs, the responses that are not JSON objects, the version documents
(300 Multiple Choices), the error bodies of each API, and the links from a create to the operations on what it
created (Schemathesis's stateful phase follows them)."""
from __future__ import annotations

from typing import Any

from app.microversion import APIVersion

UUID = {"type": "string", "format": "uuid"}
# Path parameters whose view refuses other shapes with a 400 (Nova: "Invalid aggregate id", "Invalid ID").
PATH_PARAMETERS: dict[str, dict] = {
    "aggregate_id": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "tag": {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"},  # Nova's server tag
}


def path_parameter(name: str, endpoint: str, version: APIVersion) -> dict:
    """The JSON schema of path parameter ``name`` of ``endpoint`` at ``version``."""
    if name == "service_id":  # os-services: integer ids until 2.52, UUIDs from 2.53 (Nova's service_id)
        return UUID if version.matches("2.53") else {"type": "integer", "minimum": 0, "maximum": 2147483647}
    if name == "tag" and endpoint.startswith("image"):  # Glance's image tag (Nova's server tag pattern aside)
        return {"type": "string", "minLength": 1, "maxLength": 255}
    if name == "before_timestamp":  # os-instance_usage_audit_log: Nova's "%Y-%m-%d %H:%M:%S[.%f]"
        return {"type": "string", "pattern": r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) "
                                             r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?$"}
    return PATH_PARAMETERS.get(name, {"type": "string", "minLength": 1, "maxLength": 255})


# Identity operations that name the token they act on in X-Subject-Token (Keystone's /v3/auth/tokens).
SUBJECT_TOKEN_ENDPOINTS = {"identity_tokens.validate_token", "identity_tokens.revoke_token"}

# Version discovery answering 300 Multiple Choices (Keystone's and Glance's roots); /image/versions answers 200.
MULTIPLE_CHOICES = {("identity_versions.versions", "/identity"), ("identity_versions.versions", "/identity/"),
                    ("image.versions", "/image"), ("image.versions", "/image/")}
VERSION_DOCUMENTS = {"versions.root", "versions.v2_1", "versions.v2", "identity_versions.versions",
                     "identity_versions.version", "image.versions", "network_root.versions"}
# Responses whose success body is not JSON: endpoint -> content type (an image's data).
BINARY_RESPONSES = {"image.download_image": "application/octet-stream"}
# Creates that answer 201 with no body and no media type (Nova's server tag PUT)
EMPTY_CREATED = frozenset({"server_tags.update"})

_LINK = {"type": "object", "required": ["href", "rel"],
         "properties": {"href": {"type": "string"}, "rel": {"type": "string"}}}
_VERSION = {"type": "object", "required": ["id", "status", "links"],
            "properties": {"id": {"type": "string"}, "status": {"type": "string"},
                           "links": {"type": "array", "items": _LINK}}}
VERSION_SCHEMAS: dict[str, dict] = {
    "Version": _VERSION,
    "Versions": {"type": "object", "required": ["versions"], "properties": {"versions": {"oneOf": [
        {"type": "array", "items": {"$ref": "#/components/schemas/Version"}},
        {"type": "object", "required": ["values"], "properties": {
            "values": {"type": "array", "items": {"$ref": "#/components/schemas/Version"}}}}]}}},
    "VersionDocument": {"type": "object", "minProperties": 1, "properties": {
        "version": {"$ref": "#/components/schemas/Version"},
        "versions": {"$ref": "#/components/schemas/Versions/properties/versions"}}},
}

ERROR_SCHEMAS: dict[str, dict] = {
    "ComputeFault": {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}},
    "IdentityError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "title"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "title": {"type": "string"}}}}},
    # Neutron's: {"NeutronError": {...}}, or {"NotImplementedError": {...}} for its 501
    "NetworkError": {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {
        "type": "object", "required": ["type", "message", "detail"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"}}}},
    # webob's JSON error (Glance): ``code`` is the status line ("404 Not Found").
    "ImageError": {"type": "object", "required": ["code", "message", "title"],
                   "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                  "title": {"type": "string"}}},
}


def api_of(path: str) -> str:
    if path.startswith("/identity"):
        return "identity"
    if path.startswith("/image"):
        return "image"
    if path == "/placement" or path.startswith("/placement/"):
        return "placement"
    if path == "/networking" or path.startswith("/networking/"):
        return "network"
    return "compute"


ERROR_SCHEMA_OF_API = {"compute": "ComputeFault", "identity": "IdentityError", "image": "ImageError",
                       "network": "NetworkError"}
ERROR_CODES = {"compute": (400, 401, 403, 404, 405, 406, 409, 413, 415),
               "identity": (400, 401, 403, 404, 405, 409, 413),
               "image": (400, 401, 403, 404, 405, 409, 413, 415),
               "network": (400, 401, 403, 404, 405, 409, 413)}

# Creates whose answer names what they made: create endpoint -> (path parameter, where the answer has it). Every
# operation under the created resource's path gets a link from the create's success response.
CREATES: dict[str, tuple[str, str]] = {
    "servers.create_server": ("server_id", "$response.body#/server/id"),
    "flavors.create_flavor": ("flavor_id", "$response.body#/flavor/id"),
    "keypairs.create_keypair": ("name", "$response.body#/keypair/name"),
    "aggregates.create_aggregate": ("aggregate_id", "$response.body#/aggregate/id"),
    "server_groups.create_server_group": ("group_id", "$response.body#/server_group/id"),
    "identity_projects.create_project": ("project_id", "$response.body#/project/id"),
    "identity_users.create_user": ("user_id", "$response.body#/user/id"),
    "identity_roles.create_role": ("role_id", "$response.body#/role/id"),
    "image.create_image": ("image_id", "$response.body#/id"),
}


def links(paths: dict[str, dict]) -> None:
    """Add to each create in CREATES a link to every operation on the path under it that takes its parameter."""
    for path, ops in paths.items():
        post = ops.get("post")
        endpoint = post and post["operationId"].split(":", 1)[0]
        if endpoint not in CREATES:
            continue
        param, expression = CREATES[endpoint]
        item = f"{path}/{{{param}}}"
        found: dict[str, Any] = {}
        for other, other_ops in paths.items():
            if other == item or other.startswith(item + "/"):
                for method, op in other_ops.items():
                    found[f"{method}{other[len(path):]}".replace("/", "_").replace("{", "").replace("}", "")] = {
                        "operationId": op["operationId"], "parameters": {param: expression}}
        if found:
            for code, response in post["responses"].items():
                if code.startswith("2"):
                    response["links"] = found
