"""Schemathesis hooks of tests/functional/test_schemathesis.py (loaded by SCHEMATHESIS_HOOKS): the Image API's
JSON-patch media type is sent as JSON."""
from __future__ import annotations

import json

import schemathesis


@schemathesis.serializer("application/openstack-images-v2.1-json-patch")
def _json_patch(ctx, value) -> bytes:
    return json.dumps(value).encode()


# Operations whose path names the one item their body carries (Nova: "Request body and URI mismatch" otherwise):
# path -> where the item is in the body. OpenAPI cannot relate a path parameter to a body key.
_KEY_IN_BODY = {"/v2.1/servers/{server_id}/metadata/{key}": "meta",
                "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}": None}


@schemathesis.hook
def map_case(ctx, case):
    """A schema-valid request to those operations names the body's item in its path."""
    if case.operation.path in _KEY_IN_BODY and case.operation.method.upper() == "PUT":
        root = _KEY_IN_BODY[case.operation.path]
        items = case.body.get(root) if root and isinstance(case.body, dict) else case.body
        if isinstance(items, dict) and len(items) == 1 and case.path_parameters is not None:
            case.path_parameters = {**case.path_parameters, "key": next(iter(items))}
    return case
