"""Issue 28's remainder: what Schemathesis found where Stratus and Nova (Keystone, Glance) disagreed on a request,
each checked against the reference's own rule (its JSON schema and what its view does after it)."""
from __future__ import annotations

import re

import pytest

from app.compute import names
from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)

INVALID_NAME = "An invalid 'name' value was provided. The name must be: "


# --- names: Nova's parameter_types.name / az_name / name_with_leading_trailing_spaces ---------------------------------

@pytest.mark.parametrize("value, ok", [
    ("web 1", True), ("é-ü", True), ("x", True), ("a\u00a0b", True),  # a no-break space inside is a space (Zs)
    ("agg\x85", False), ("a\x85b", False),  # NEL is a control character (Cc), anywhere
    (" lead", False), ("trail ", False), ("trail\u3000", False), ("\u2003lead", False),  # Zs at an end
    ("a\u2028b", False), ("a\u200bb", False),  # a line separator (Zl), a format character (Cf)
    ("smile \U0001F600", False),  # outside the Basic Multilingual Plane: in none of Nova's classes
    ("", True),  # the pattern allows it; minLength refuses it
])
def test_name_pattern_is_novas(value, ok):
    assert (names.invalid_name(names.NAME_PATTERN, value) is None) is ok


def test_az_and_spaced_name_patterns_are_novas():
    assert names.invalid_name(names.AZ_NAME_PATTERN, "zone:1") == \
        INVALID_NAME + "printable characters except :.Can not start or end with whitespace."
    assert names.invalid_name(names.AZ_NAME_PATTERN, "zone-1") is None
    assert names.invalid_name(names.NAME_WITH_SPACES_PATTERN, " padded ") is None
    assert names.invalid_name(names.NAME_WITH_SPACES_PATTERN, "   ") is not None
    assert names.invalid_name(names.NAME_WITH_SPACES_PATTERN, "a\x85") is not None


def test_patterns_are_plain_json_schema_regexes():
    """The document carries the patterns as validated: ASCII text, \\uXXXX escapes that ECMA and Python read."""
    for pattern in (names.NAME_PATTERN, names.AZ_NAME_PATTERN, names.NAME_WITH_SPACES_PATTERN):
        assert pattern.isascii() and re.compile(pattern)


def _aggregate(client, admin, body: dict, agg_id: int | None = None):
    if agg_id is None:
        return client.post("/v2.1/os-aggregates", json={"aggregate": body}, headers=admin.headers)
    return client.put(f"/v2.1/os-aggregates/{agg_id}", json={"aggregate": body}, headers=admin.headers)


@pytest.mark.parametrize("body, reason", [
    ({"name": "agg\x85"}, "printable characters. Can not start or end with whitespace."),
    ({"name": " padded"}, "printable characters. Can not start or end with whitespace."),
    ({"name": "ok", "availability_zone": "a:b"}, "printable characters except :.Can not start or end with whitespace."),
])
def test_aggregate_create_refuses_what_nova_refuses(client, admin, inprocess_conductor, body, reason):
    resp = _aggregate(client, admin, body)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["badRequest"]["message"] == INVALID_NAME + reason


def test_aggregate_update_takes_a_padded_name_as_nova(client, admin, inprocess_conductor):
    created = _aggregate(client, admin, {"name": "agg-1"})
    assert created.status_code == 200, created.get_json()
    agg_id = created.get_json()["aggregate"]["id"]
    resp = _aggregate(client, admin, {"name": " padded "}, agg_id)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["aggregate"]["name"] == " padded "
    assert _aggregate(client, admin, {"name": "agg\x85"}, agg_id).status_code == 400
    host = client.post(f"/v2.1/os-aggregates/{agg_id}/action", json={"add_host": {"host": "bad host"}},
                       headers=admin.headers)
    assert host.status_code == 400  # Nova's parameter_types.fqdn
    assert "does not match '^[a-zA-Z0-9-._]*$'" in host.get_json()["badRequest"]["message"]


def test_server_name_with_a_control_character_is_novas_invalid_name(client, world: World):
    resp = client.put(f"/v2.1/servers/{world.server_id}", json={"server": {"name": "web\x85"}},
                      headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["badRequest"]["message"].startswith(INVALID_NAME)


# --- numbers: JSON Schema's integer is 5 and 5.0 (Nova's quota schemas, then int(value)) ------------------------------

def test_quota_values_take_whole_number_floats_as_nova(client, admin, inprocess_conductor):
    url = f"/v2.1/os-quota-sets/{admin.project_id}"
    resp = client.put(url, json={"quota_set": {"instances": 7.0, "cores": "0012", "force": True}},
                      headers=admin.headers)
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["quota_set"]["instances"], resp.get_json()["quota_set"]["cores"]) == (7, 12)
    for value in (7.5, "7.0", -2, "-2", 2 ** 31, True):
        assert client.put(url, json={"quota_set": {"instances": value}}, headers=admin.headers).status_code == 400
    resp = client.put("/v2.1/os-quota-class-sets/default", json={"quota_class_set": {"ram": 2048.0}},
                      headers=admin.headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["quota_class_set"]["ram"] == 2048


def test_quota_string_pattern_is_the_views_range():
    from app.compute.body_schemas import QUOTA_STRING
    for text in ("-1", "-01", "-0", "0", "0002147483647", "2147483647", "999999999", "1999999999"):
        assert re.match(QUOTA_STRING, text), text
    for text in ("-2", "2147483648", "9999999999", "1.0", "", " 1", "+1"):
        assert not re.match(QUOTA_STRING, text), text


def test_rxtx_factor_zero_is_refused_and_documented_so(client, admin, inprocess_conductor):
    from app.compute.schemas import RxtxFactor
    flavor = {"name": "r", "ram": 1, "vcpus": 1, "disk": 1}
    for value, status in ((0.0, 400), ("0", 400), ("0.0", 400), ("1e3", 400), (True, 400), ("1.5", 200), (2, 200)):
        resp = client.post("/v2.1/flavors", json={"flavor": {**flavor, "name": f"r-{value!r}", "rxtx_factor": value}},
                           headers={**admin.headers, "OpenStack-API-Version": "compute 2.55"})
        assert resp.status_code == status, (value, resp.get_json())
    pattern = RxtxFactor.json_schema["pattern"]
    assert RxtxFactor.json_schema["exclusiveMinimum"] == 0
    assert [bool(re.match(pattern, t)) for t in ("0", "0.00", "00.10", "3", "1.5")] == [False, False, True, True, True]


# --- booleans and ids: Keystone's and Glance's JSON Schema types ------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, 0.0, "false"])
def test_project_is_domain_is_a_json_boolean(client, admin, value):
    resp = client.post("/identity/v3/projects", json={"project": {"name": f"p-{value!r}", "is_domain": value}},
                       headers=admin.headers)
    assert resp.status_code == 400, resp.get_json()


def test_project_update_name_and_empty_body_as_keystone(client, admin):
    created = client.post("/identity/v3/projects", json={"project": {"name": "renamed"}}, headers=admin.headers)
    url = f"/identity/v3/projects/{created.get_json()['project']['id']}"
    for body in ({"name": ""}, {"name": "   "}, {}):
        assert client.patch(url, json={"project": body}, headers=admin.headers).status_code == 400, body
    assert client.get(url, headers=admin.headers).get_json()["project"]["name"] == "renamed"


@pytest.mark.parametrize("image_id", ["00000000000000000000000000000000", "{12345678-1234-1234-1234-123456789012}",
                                      "urn:uuid:12345678-1234-1234-1234-123456789012"])
def test_image_id_is_a_hyphenated_uuid_as_glance(client, admin, image_id):
    resp = client.post("/image/v2/images", json={"id": image_id, "name": "x"}, headers=admin.headers)
    assert resp.status_code == 400, resp.get_json()
    ok = client.post("/image/v2/images", json={"id": "12345678-1234-1234-1234-123456789012"}, headers=admin.headers)
    assert ok.status_code == 201, ok.get_json()


# --- Nova's parameter_types.boolean: true/false and its strings, not 0/1 nor marshmallow's "t"/"y" -----------------

def test_nova_boolean_takes_novas_strings_only():
    from marshmallow import ValidationError

    from app.fields import NovaBoolean
    field = NovaBoolean(extra=("auto",))
    assert [field.deserialize(v) for v in (True, "True", "on", "YES", "0", "off", "auto")] == \
        [True, True, True, True, False, False, "auto"]
    for value in (1, 0, "t", "y", "tRuE", None, "Auto"):
        with pytest.raises(ValidationError):
            field.deserialize(value)
    assert field.json_schema["type"] == ["boolean", "string"] and "auto" in field.json_schema["enum"]


@pytest.mark.parametrize("value, status", [("yes", 200), (1, 400), ("t", 400)])
def test_flavor_is_public_is_a_nova_boolean(client, admin, inprocess_conductor, value, status):
    flavor = {"name": f"pub-{value}", "ram": 1, "vcpus": 1, "disk": 1, "os-flavor-access:is_public": value}
    resp = client.post("/v2.1/flavors", json={"flavor": flavor}, headers=admin.headers)
    assert resp.status_code == status, resp.get_json()


def test_live_migrate_arguments_are_novas_per_microversion(app):
    from app.compute.server_moves import LiveMigrateSchema
    from app.microversion import APIVersion
    from app.openapi import build
    doc = build(app, APIVersion(2, 96))
    action = doc["paths"]["/v2.1/servers/{server_id}/action"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["os-migrateLive"]
    component = doc["components"]["schemas"][action["$ref"].rsplit("/", 1)[-1]]
    assert set(component["properties"]) == {"host", "block_migration"}  # force until 2.67, disk_over_commit 2.24
    assert "auto" in component["properties"]["block_migration"]["enum"]
    assert LiveMigrateSchema.removed == {"disk_over_commit": "2.25", "force": "2.68"}


@pytest.mark.parametrize("value, status", [("yes", 202), (False, 202), (None, 400), (1, 400), ("t", 400)])
def test_config_drive_is_a_nova_boolean(client, world: World, value, status):
    server = {"name": "cd", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              "config_drive": value}
    resp = client.post("/v2.1/servers", json={"server": server},
                       headers={**world.a.headers, "OpenStack-API-Version": "compute 2.37"})
    assert resp.status_code == status, resp.get_json()


# --- the fuzz run keeps its own credentials (tests/functional/schemathesis_hooks.py) ----------------------------------

def test_fuzz_hooks_send_identity_writes_on_the_runs_credentials_to_decoys(monkeypatch):
    from tests.functional import schemathesis_hooks as hooks
    monkeypatch.setattr(hooks, "_DECOYS", {"own-project": "decoy-project", "own-user": "decoy-user"})
    path = "/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
    params = {"project_id": "own-project", "user_id": "own-user", "role_id": "r"}
    assert hooks.protected("DELETE", path, params) == {"project_id": "decoy-project", "user_id": "decoy-user",
                                                       "role_id": "r"}
    assert hooks.protected("PATCH", "/identity/v3/projects/{project_id}", {"project_id": "own-project"}) == {
        "project_id": "decoy-project"}
    assert hooks.protected("HEAD", path, params) == params  # reads change nothing
    quota = {"project_id": "own-project"}  # the Compute quota API keeps the run's (existing) project
    assert hooks.protected("PUT", "/v2.1/os-quota-sets/{project_id}", quota) == quota


def test_endpoint_url_blanks_are_the_same_class_for_python_and_json_schema(client, admin):
    from app.identity.body_schemas import _URL
    assert re.match(_URL.regex, "https://0\x1d|n") is None  # a control character is no URL character, in both
    assert re.match(_URL.regex, "https://h\u00a0x/p") is not None  # "\s" in Python only: no longer refused


def test_tag_added_answers_201_without_a_media_type(client, world: World, monkeypatch):
    from types import SimpleNamespace

    from app.compute import server_tags
    monkeypatch.setattr(server_tags, "_instance", lambda server_id, write: SimpleNamespace(uuid=server_id))
    monkeypatch.setattr(server_tags.rpc, "call", lambda *args, **kw: {"created": True})  # an active server's add
    resp = client.put(f"/v2.1/servers/{world.server_id}/tags/t-new", headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 201 and not resp.get_data()
    assert "Content-Type" not in resp.headers and resp.headers["Location"].endswith("/tags/t-new")
    from app.openapi import build
    put = build(client.application)["paths"]["/v2.1/servers/{server_id}/tags/{tag}"]["put"]["responses"]
    assert put["201"] == {"description": "Created (no body)"}  # the document says so too (a JSON 2XX failed ST104)


def test_security_group_actions_argument_is_documented_as_an_object_naming_a_group(client, world: World, app):
    """Nova's parse answers 400 "Missing parameter dict" for a null argument: the document must not call null valid
    (the merged Networking work left it "any value": Schemathesis's ST202)."""
    from app.openapi import build
    url = f"/v2.1/servers/{world.server_id}/action"
    resp = client.post(url, json={"addSecurityGroup": None}, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 400 and resp.get_json()["badRequest"]["message"] == "Missing parameter dict"
    doc = build(app)
    props = doc["paths"]["/v2.1/servers/{server_id}/action"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]
    for action in ("addSecurityGroup", "removeSecurityGroup"):
        component = doc["components"]["schemas"][props[action]["$ref"].rsplit("/", 1)[-1]]
        assert component["type"] == "object" and component["required"] == ["name"]
        assert component["properties"]["name"]["pattern"] == r"\S"


def test_region_update_id_may_be_null_as_keystone_and_is_documented_so(client, admin, app):
    from app.openapi import build
    assert client.post("/identity/v3/regions", json={"region": {"id": "r-1"}}, headers=admin.headers).status_code == 201
    url = "/identity/v3/regions/r-1"
    assert client.patch(url, json={"region": {"id": None, "description": "d"}}, headers=admin.headers).status_code \
        == 200
    assert client.patch(url, json={"region": {"id": "r-2"}}, headers=admin.headers).status_code == 400
    doc = build(app)
    ref = doc["paths"]["/identity/v3/regions/{region_id}"]["patch"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["region"]["$ref"]
    component = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert component["dependentSchemas"] == {"id": {"properties": {"id": {"type": "null"}}}}
