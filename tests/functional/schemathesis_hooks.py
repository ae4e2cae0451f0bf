"""Schemathesis hooks of tests/functional/test_schemathesis.py (loaded by SCHEMATHESIS_HOOKS): the Image API's
JSON-patch media type is sent as JSON."""
from __future__ import annotations

import json
import os

import requests
import schemathesis


@schemathesis.serializer("application/openstack-images-v2.1-json-patch")
def _json_patch(ctx, value) -> bytes:
    return json.dumps(value).encode()


# Operations whose path names the one item their body carries (Nova: "Request body and URI mismatch" otherwise):
# path -> where the item is in the body. OpenAPI cannot relate a path parameter to a body key.
_KEY_IN_BODY = {"/v2.1/servers/{server_id}/metadata/{key}": "meta", "/v2.1/images/{image_id}/metadata/{key}": "meta",
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


# Test data (tests/functional/test_schemathesis.py): what exists on the stack, for the references a schema-valid
# request makes (the document can type them, not enumerate them).
_REFS = json.loads(os.environ.get("STRATUS_FUZZ_REFS", "{}"))
# References to named resources the run does not create: a positive case leaves them out.
_UNKNOWN_NAMES = ("key_name", "availability_zone", "host", "hypervisor_hostname", "security_groups")


def _with_refs(path: str, body: dict) -> dict:
    body = dict(body)
    if path == "/v2.1/servers" and isinstance(body.get("server"), dict):
        server = {k: v for k, v in body["server"].items() if k not in _UNKNOWN_NAMES}
        server["flavorRef"] = _REFS["flavors"][0]
        if _REFS["images"]:
            server["imageRef"] = _REFS["images"][0]
        counts = [server.get(key) for key in ("min_count", "max_count")]
        if all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in counts):
            server["max_count"] = max(counts)  # Nova: min_count <= max_count
        if isinstance(server.get("networks"), list):
            server["networks"] = [{"uuid": _REFS["networks"][0]} for _ in server["networks"][:1]]
        body["server"] = server
    elif path == "/v2.1/os-keypairs" and isinstance(body.get("keypair"), dict):
        # an x509 one needs a certificate; a key pair of another user (user_id, 2.10) is addressed with ?user_id=,
        # which the links from the create to show/delete cannot carry (the document describes no query parameters)
        keypair = {k: v for k, v in body["keypair"].items() if k not in ("type", "user_id")}
        body["keypair"] = {**keypair, "public_key": _REFS["public_key"]} if "public_key" in keypair else keypair
    elif path.endswith("/images") and isinstance(body.get("cache"), list) and _REFS["images"]:
        body["cache"] = [{"id": image} for image in _REFS["images"][:len(body["cache"])]]
    elif path.startswith("/v2.1/os-quota-sets/") and isinstance(body.get("quota_set"), dict):
        # Nova refuses a limit under the usage unless forced; the document cannot know the usage
        body["quota_set"] = {**body["quota_set"], "force": True}
    elif path.startswith("/identity/v3/endpoints") and isinstance(body.get("endpoint"), dict):
        # Keystone: an unknown service or region is a validation error (400), and the document cannot list them
        endpoint = {k: v for k, v in body["endpoint"].items() if k != "region_id"}
        if "service_id" in endpoint and _REFS.get("services"):
            endpoint["service_id"] = _REFS["services"][0]
        body["endpoint"] = endpoint
    elif path.startswith("/v2.1/os-aggregates/") and path.endswith("/action") and _REFS.get("hosts"):
        # a host that exists (Nova: 404 otherwise); removing one that is no member is a 404 too, so add it
        args = body.get("add_host", body.get("remove_host"))
        if isinstance(args, dict) and "host" in args:
            body = {"add_host": {**args, "host": _REFS["hosts"][0]}}
    elif path.endswith("/import") and isinstance(body.get("method"), dict):
        # web-download's URI goes through the deployment's filter (400 otherwise), which the document cannot know
        body["method"] = {"name": "glance-direct"}
    elif path.endswith("/application_credentials") and isinstance(body.get("application_credential"), dict):
        # the roles must be the token's and the expiry in the future (400s otherwise): the token's, no expiry
        body["application_credential"] = {k: v for k, v in body["application_credential"].items()
                                          if k not in ("roles", "expires_at")}
    elif path.endswith("/action"):
        if isinstance(body.get("rebuild"), dict) and _REFS["images"]:
            body["rebuild"] = {**body["rebuild"], "imageRef": _REFS["images"][0]}
        if isinstance(body.get("resize"), dict):
            body["resize"] = {**body["resize"], "flavorRef": _REFS["flavors"][0]}
    return body


def _is_positive(case) -> bool:
    return bool(_REFS) and case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook("map_case")
def _references(ctx, case):
    """A schema-valid (positive) case names flavors, images, networks and keys that exist."""
    if _is_positive(case) and isinstance(case.body, dict):
        case.body = _with_refs(case.operation.path, case.body)
    return case


# The run's own credentials (its tokens' users, projects and roles) -> decoys of the same kind
# (test_schemathesis._decoys): a fuzzed write may disable, delete or re-password whatever the API lets it, except
# what the run logs in with (Keystone rightly lets an admin disable their own project, which ends the run's token).
_DECOYS: dict[str, str] = _REFS.get("decoys", {})
_READS = ("GET", "HEAD", "OPTIONS")
_PROTECTED = ("/identity/", "/v2.1/flavors/", "/image/v2/images/", "/v2.1/images/")


def protected(method: str, path: str, path_parameters: dict | None) -> dict | None:
    """The path parameters a request is sent with: an Identity, flavor or image write's own ids swapped for their
    decoys (the Compute quota and usage APIs keep the run's project: the decoy project may be gone)."""
    if method.upper() in _READS or not path.startswith(_PROTECTED) or not path_parameters:
        return path_parameters
    return {key: _DECOYS.get(value, value) if isinstance(value, str) else value
            for key, value in path_parameters.items()}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """Every phase's request, just before it is sent: the own credentials protected, and a positive case's
    references made real (a coverage-phase case may not have passed through map_case)."""
    params = protected(case.method, case.operation.path, case.path_parameters)
    if params != case.path_parameters:
        case.path_parameters = params
    if _is_positive(case) and isinstance(case.body, dict):
        body = _with_refs(case.operation.path, case.body)
        if body != case.body:
            case.body = body


@schemathesis.hook
def filter_case(ctx, case) -> bool:
    """Leave out Schemathesis's own contradiction: the coverage phase's "Default positive test case" marked negative
    (seen for a path parameter whose pattern has a space: a valid value, then reported as an accepted invalid one)."""
    meta = case.meta
    return not (meta is not None and meta.generation.mode.is_negative
                and getattr(meta.phase.data, "description", None) == "Default positive test case")


@schemathesis.hook
def after_call(ctx, case, response):
    """A host a positive case added to an aggregate is removed again at once: Nova refuses to delete an aggregate
    with hosts (400), which the document cannot say of a schema-valid DELETE."""
    body = case.body if isinstance(case.body, dict) else {}
    if (case.operation.path == "/v2.1/os-aggregates/{aggregate_id}/action" and response.status_code == 200
            and isinstance(body.get("add_host"), dict)):
        sent = response.request
        requests.post(sent.url, json={"remove_host": body["add_host"]}, timeout=30, headers={
            k: v for k, v in sent.headers.items() if k.lower() in ("x-auth-token", "openstack-api-version")})
