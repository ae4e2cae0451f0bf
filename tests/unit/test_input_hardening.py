"""Input hardening: body size, JSON depth, content types, hostile path/query text; and no route answers 5xx."""
from __future__ import annotations

import collections
import os
import re
import uuid

import pytest

from app.request_limits import MAX_JSON_DEPTH, json_depth
from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)

_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # DELETE last: it removes the world's resources
HUGE = b'{"a": "' + b"x" * (2 << 20) + b'"}'
BODIES = {
    "none": {},
    "bad json": {"data": b"{not json", "content_type": "application/json"},
    "json list": {"json": [1, 2]},
    "json scalar": {"json": "x"},
    "json null": {"data": b"null", "content_type": "application/json"},
    "deep": {"data": b"[" * 5000 + b"]" * 5000, "content_type": "application/json"},
    "deep object": {"data": b'{"a":' * 200 + b"1" + b"}" * 200, "content_type": "application/json"},
    "wrong types": {"json": {"server": {"name": 1, "metadata": [1], "flavorRef": {}}, "keypair": [],
                             "flavor": {"ram": "x"}, "auth": 1, "user": None, "project": "p", "role": 2,
                             "status": [], "op": 1}},
    "bad patch": {"json": [{"op": "replace", "path": 7}, 1],
                  "content_type": "application/openstack-images-v2.1-json-patch"},
    "xml": {"data": b"<server/>", "content_type": "application/xml"},
    "binary": {"data": os.urandom(512), "content_type": "application/octet-stream"},
    "non-utf8": {"data": b'{"a": "\xff\xfe"}', "content_type": "application/json"},
    "huge": {"data": HUGE, "content_type": "application/json"},
}
GARBAGE_IDS = (str(uuid.uuid4()), "not-a-uuid", "x" * 300, "%00", "%F0%9F%92%A9", "1'%20OR%20'1'='1", "-1")


def _real_ids(w: World) -> dict[str, str]:
    return {"server_id": w.server_id, "image_id": w.image_id, "flavor_id": w.flavor_id, "name": w.keypair,
            "project_id": w.a.project_id, "user_id": w.a.user_id, "role_id": "member", "domain_id": "default",
            "request_id": "req-" + str(uuid.uuid4()), "hypervisor_id": "1", "service_id": str(uuid.uuid4()),
            "network_id": str(uuid.uuid4())}


def _routes(app) -> list:
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: r.rule)


def _url(rule, ids: dict[str, str] | str) -> str:
    return _ARG.sub(lambda m: ids if isinstance(ids, str) else ids.get(m.group(1), "x"), rule.rule)


def _assert_sane(resp, what: str) -> int:
    text = resp.get_data(as_text=True)
    assert resp.status_code < 500, f"{what} -> {resp.status_code}: {text[:500]}"
    assert "Traceback" not in text, what
    if resp.status_code >= 400 and resp.status_code != 405 or resp.status_code in (413, 415):
        if " /image" in what and not resp.is_json:  # Glance's are webob's: plain text without an Accept header
            assert resp.mimetype == "text/plain" and text.startswith(f"{resp.status_code} "), \
                f"{what} -> {resp.status_code} is not webob's plain-text error body: {text[:200]}"
        else:
            assert resp.is_json, f"{what} -> {resp.status_code} is not a JSON error body: {text[:200]}"
    return resp.status_code


@pytest.mark.slow
def test_every_route_survives_garbage(app, client, world):
    """Every route in url_map, every method, hostile ids and bodies, three callers: never a 5xx or a trace."""
    real = _real_ids(world)
    callers = {"admin": world.admin, "member-a": world.a, "member-b": world.b, "reader": world.reader}
    codes: collections.Counter = collections.Counter()
    for method in METHODS:
        for rule in _routes(app):
            allowed = method in rule.methods
            for ids in [real, *(GARBAGE_IDS if rule.arguments else ())]:
                bodies = BODIES if allowed and ids is real else {"none": {}, "wrong types": BODIES["wrong types"]}
                if method in ("GET", "DELETE"):
                    bodies = {k: v for k, v in bodies.items() if k in ("none", "bad json")}
                url = _url(rule, ids)
                for who, cred in callers.items() if ids is real else [("admin", world.admin)]:
                    for label, body in bodies.items():
                        resp = client.open(url, method=method, headers={**cred.headers, **COMPUTE}, **body)
                        codes[_assert_sane(resp, f"{who} {method} {url[:80]} [{label}]")] += 1
        # Query-string garbage on every GET.
        if method == "GET":
            for rule in _routes(app):
                for query in ("limit=-1&marker=%00", "limit=abc&sort_key=%27&sort_dir=x", "name=%5B&status=%ff",
                              "changes-since=notadate&all_tenants=1&is_public=maybe&minRam=x",
                              "limit=99999999999999999999999&minRam=99999999999999999999&minDisk=-99999999999999999999",
                              "size_min=99999999999999999999&size_max=-1&min_ram=1e400&sort=name:sideways"):
                    resp = client.get(f"{_url(rule, real)}?{query}", headers={**world.admin.headers, **COMPUTE})
                    codes[_assert_sane(resp, f"GET {rule.rule}?{query}")] += 1
    # The walk reached the views (successes), their validation (400) and the isolation checks (403/404).
    assert sum(codes.values()) > 2000 and all(codes[c] for c in (200, 400, 403, 404, 405, 413, 415)), codes
    print(sorted(codes.items()))


def test_oversized_bodies_get_each_apis_413(client, world):
    for url, method, key in (("/v2.1/servers", "POST", "overLimit"), ("/identity/v3/users", "POST", "error"),
                             ("/image/v2/images", "POST", "code")):
        resp = client.open(url, method=method, data=HUGE, content_type="application/json",
                           headers={**world.a.headers, "Accept": "application/json"})
        assert resp.status_code == 413, resp.get_data(as_text=True)[:200]
        assert key in resp.get_json()
    # Glance's is webob's JSON: the status line as its code
    assert resp.get_json()["code"] == "413 Request Entity Too Large"
    resp = client.post("/v2.1/servers", data=HUGE, content_type="application/json", headers=world.a.headers)
    assert resp.get_json() == {"overLimit": {"code": 413, "message": "Request is too large."}}


def test_oversized_chunked_body_is_refused(client, world):
    """No Content-Length (chunked): the limit still applies while the body is read."""
    import io
    env = {"wsgi.input_terminated": True}
    resp = client.post("/v2.1/servers", input_stream=io.BytesIO(HUGE), content_type="application/json",
                       headers={**world.a.headers, "Transfer-Encoding": "chunked"}, environ_base=env)
    assert resp.status_code == 413, resp.get_data(as_text=True)[:200]


def test_image_upload_is_exempt_from_the_body_limit(client, world, monkeypatch):
    from core import settings
    monkeypatch.setenv("STRATUS_MAX_REQUEST_BODY", "1024")
    settings.get_settings.cache_clear()
    img = client.post("/image/v2/images", json={"name": "big", "disk_format": "raw", "container_format": "bare"},
                      headers=world.a.headers).get_json()
    resp = client.put(f"/image/v2/images/{img['id']}/file", data=b"y" * 100_000,
                      headers={**world.a.headers, "Content-Type": "application/octet-stream"})
    assert resp.status_code == 204, resp.get_data(as_text=True)
    resp = client.post("/v2.1/os-keypairs", json={"keypair": {"name": "k", "public_key": "x" * 2000}},
                       headers=world.a.headers)
    assert resp.status_code == 413


def test_deeply_nested_json_is_a_400_not_a_recursion_error(client, world):
    resp = client.post("/v2.1/servers", data=b"[" * 100_000 + b"]" * 100_000, content_type="application/json",
                       headers=world.a.headers)
    assert resp.status_code == 400 and "nested" in resp.get_json()["badRequest"]["message"]
    ok_depth = b'{"a":' * (MAX_JSON_DEPTH - 1) + b"1" + b"}" * (MAX_JSON_DEPTH - 1)
    resp = client.post("/v2.1/servers", data=ok_depth, content_type="application/json", headers=world.a.headers)
    assert resp.status_code == 400 and "'a' was unexpected" in resp.get_json()["badRequest"]["message"]  # parsed


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]]"}]}') == 3
    assert json_depth(b"[[[]]]") == 3 and json_depth(b"") == 0


def test_compute_content_types_as_nova(client, world):
    body = b'{"keypair": {"name": "ct", "public_key": "%s"}}' % world_key()
    for ctype, code in (("application/xml", 415), ("application/x-www-form-urlencoded", 415),
                        ("text/plain", 201), ("application/vnd.openstack.compute+json", 201)):
        client.delete("/v2.1/os-keypairs/ct", headers={**world.a.headers, **COMPUTE})
        resp = client.post("/v2.1/os-keypairs", data=body, content_type=ctype, headers={**world.a.headers, **COMPUTE})
        assert resp.status_code == code, (ctype, resp.get_data(as_text=True))
        if code == 415:
            assert resp.get_json() == {"badMediaType": {"code": 415, "message": "Unsupported Content-Type"}}
    # No Content-Type at all is read as JSON, as Nova does.
    client.delete("/v2.1/os-keypairs/ct", headers={**world.a.headers, **COMPUTE})
    resp = client.post("/v2.1/os-keypairs", data=body, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    resp = client.post("/v2.1/servers", data=b"{nope", content_type="application/json", headers=world.a.headers)
    assert resp.get_json() == {"badRequest": {"code": 400, "message": "Malformed request body"}}


def world_key() -> bytes:
    from tests.unit.inprocess import PUBLIC_KEY
    return PUBLIC_KEY.encode()


def test_nul_and_oversized_path_ids_are_404_and_nul_queries_400(client, world):
    for url in ("/v2.1/servers/%00", "/image/v2/images/" + "a" * 300, "/identity/v3/users/a%00b"):
        resp = client.get(url, headers=world.admin.headers)
        assert resp.status_code == 404, (url, resp.get_data(as_text=True))
    resp = client.get("/v2.1/servers?name=a%00", headers=world.admin.headers)
    assert resp.status_code == 400 and "NUL" in resp.get_json()["badRequest"]["message"]


@pytest.mark.parametrize("field,value", [("name", "n" * 256), ("name", " lead"), ("description", "d" * 256),
                                         ("metadata", {"k" * 256: "v"}), ("metadata", {"k": "v" * 256}),
                                         ("metadata", {"": "v"}), ("bogus", 1)])
def test_server_field_limits(client, world, field, value):
    server = {"name": "ok", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              field: value}
    resp = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 400, resp.get_data(as_text=True)


def test_every_server_action_survives_wrong_argument_types(app, client, world):
    """Each action name the action route knows with non-object and odd arguments."""
    from app.compute.actions import ACTIONS
    for name in sorted(set(ACTIONS) - {"os-stop", "suspend", "pause"}):  # keep the server usable for the next actions
        for args in (None, 0.2, "x", [1], {"bogus": 1}, {"type": []}, {"type": {}}, {"length": "x"},
                     {"locked_reason": 7}):
            for server_id in (world.server_id, str(uuid.uuid4())):
                resp = client.post(f"/v2.1/servers/{server_id}/action", json={name: args},
                                   headers={**world.a.headers, **COMPUTE})
                _assert_sane(resp, f"{name} {args!r}")
    for rc in ({"protocol": [], "type": "novnc"}, {"protocol": "vnc", "type": {}}, {"protocol": None}, []):
        resp = client.post(f"/v2.1/servers/{world.server_id}/remote-consoles", json={"remote_console": rc},
                           headers={**world.a.headers, **COMPUTE})
        assert resp.status_code == 400, resp.get_data(as_text=True)


@pytest.mark.parametrize("field,value", [("ram", 2 ** 31), ("vcpus", 2 ** 40), ("disk", 10 ** 20),
                                         ("swap", 2 ** 31), ("rxtx_factor", 1e300), ("id", "a/b"),
                                         ("name", " padded ")])
def test_flavor_numbers_beyond_the_database_are_400(client, world, field, value):
    flavor = {"name": "big", "ram": 1, "vcpus": 1, "disk": 1, field: value}
    resp = client.post("/v2.1/flavors", json={"flavor": flavor}, headers={**world.admin.headers, **COMPUTE})
    assert resp.status_code == 400, resp.get_data(as_text=True)


def test_huge_counts_are_bounded_by_quota_before_any_work(client, world):
    """Nova's multi-create: a huge max_count starts only what the quota leaves room for; a huge min_count is 403."""
    server = {"name": "many", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              "min_count": 2_000_000_000, "max_count": 2_000_000_000}
    resp = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **COMPUTE})
    # Nova names the over resources sorted: cores, instances, ram.
    assert resp.status_code == 403 and "Quota exceeded for cores, instances, ram: Requested 2000000000, " in \
        resp.get_json()["forbidden"]["message"]
    server.update(min_count=1, max_count=2_000_000_000, return_reservation_id=True)
    resp = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    listed = client.get("/v2.1/servers?name=^many", headers={**world.a.headers, **COMPUTE}).get_json()["servers"]
    assert 1 <= len(listed) <= 10  # the default instances quota, not two billion requests


def test_metadata_item_count_is_limited_as_nova_quota(client, world):
    server = {"name": "meta", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              "metadata": {f"k{i}": "v" for i in range(129)}}
    resp = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 403 and "metadata items" in resp.get_json()["forbidden"]["message"]
    server["metadata"] = {f"k{i}": "v" for i in range(128)}
    resp = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 202, resp.get_data(as_text=True)


def test_service_update_checks_the_uuid_and_reason(client, world):
    h = {**world.admin.headers, "OpenStack-API-Version": "compute 2.53"}
    resp = client.put("/v2.1/os-services/not-a-uuid", json={"status": "disabled"}, headers=h)
    assert resp.status_code == 400 and resp.get_json()["badRequest"]["message"] == "Invalid uuid not-a-uuid"
    for reason in ({"a": 1}, "r" * 256, ""):
        resp = client.put(f"/v2.1/os-services/{uuid.uuid4()}", json={"status": "disabled",
                                                                     "disabled_reason": reason}, headers=h)
        assert resp.status_code == 400, resp.get_data(as_text=True)


def test_unpaired_surrogates_are_refused_before_any_database_sees_them(client, world):
    """PostgreSQL cannot store a lone surrogate (its drivers fail to encode it): refuse it as a malformed body."""
    for text in (rb"\ud800", rb"x\udfffy", rb"\uDBFF\u0041"):
        body = b'{"keypair": {"name": "' + text + b'", "public_key": "k"}}'
        resp = client.post("/v2.1/os-keypairs", data=body, content_type="application/json", headers=world.a.headers)
        assert resp.status_code == 400 and "surrogate" in resp.get_json()["badRequest"]["message"]
    paired = b'{"project": {"name": "emoji", "description": "\\ud83d\\ude00"}}'  # a surrogate pair is fine
    resp = client.post("/identity/v3/projects", data=paired, content_type="application/json",
                       headers=world.admin.headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["project"]["description"] == "\U0001f600"
    # (a name is Nova's format: characters of the Basic Multilingual Plane only, so an emoji name is a 400)
    resp = client.put(f"/v2.1/servers/{world.server_id}", data=b'{"server": {"name": "\\ud83d\\ude00"}}',
                      content_type="application/json", headers=world.a.headers)
    assert resp.status_code == 400, resp.get_data(as_text=True)
