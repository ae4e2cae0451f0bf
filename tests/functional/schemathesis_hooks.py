"""Schemathesis hooks of tests/functional/test_schemathesis.py (loaded by SCHEMATHESIS_HOOKS): the Image API's
JSON-patch media type is sent as JSON."""
from __future__ import annotations

import json

import schemathesis


@schemathesis.serializer("application/openstack-images-v2.1-json-patch")
def _json_patch(ctx, value) -> bytes:
    return json.dumps(value).encode()
