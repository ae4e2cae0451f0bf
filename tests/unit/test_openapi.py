"""The OpenAPI document covers every route in url_map, and Schemathesis finds no 5xx when fuzzing from it."""
from __future__ import annotations

import json
import re

import pytest

from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401  (fixtures)

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def test_document_is_public_and_lists_every_route(app, client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.") and doc["components"]["securitySchemes"]["token"]["name"] == "X-Auth-Token"
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = _ARG.sub(r"{\1}", rule.rule)
        if path == "/placement" or path.startswith("/placement/"):  # its own service and microversions
            assert path not in doc["paths"]
            continue
        methods = rule.methods - {"OPTIONS"}
        for method in methods - {"HEAD"} if "GET" in methods else methods:
            op = doc["paths"][path][method.lower()]
            assert {"400", "401", "403", "404", "413"} <= set(op["responses"]), (path, method)
            assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == rule.arguments, path
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert doc["paths"]["/identity/v3/auth/tokens"]["post"]["security"] == []


def test_request_bodies_come_from_the_marshmallow_schemas(client):
    doc = client.get("/openapi.json").get_json()  # the newest microversion
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/v2.1/servers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # personality is refused from 2.57 on: this microversion's component leaves it out
    assert create["required"] == ["server"]
    assert create["properties"]["server"]["$ref"].endswith("/ServerCreateV237_2_96")
    server = schemas["ServerCreateV237_2_96"]
    assert server["additionalProperties"] is False  # unknown fields are rejected, as the schema does
    # networks from 2.37; imageRef: without a volume service a server boots from an image
    assert set(server["required"]) == {"name", "flavorRef", "imageRef", "networks"}
    assert "personality" not in server["properties"]
    assert server["properties"]["name"]["maxLength"] == 255 and "OS-DCF:diskConfig" in server["properties"]
    assert server["properties"]["flavorRef"]["type"] == ["string", "integer"]
    keypair = doc["paths"]["/v2.1/os-keypairs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert keypair["properties"]["keypair"]["$ref"].endswith("/KeypairCreateV292")
    action = doc["paths"]["/v2.1/servers/{server_id}/action"]["post"]["requestBody"]["content"]
    props = action["application/json"]["schema"]["properties"]
    assert {"os-stop", "reboot", "lock", "unlock"} <= set(props) and props["reboot"]["$ref"].endswith("/Reboot")
    # the schemas the handlers load their arguments with (@action_argument), and lock's (or null, from 2.73)
    assert props["lock"] == {"anyOf": [{"$ref": "#/components/schemas/Lock"}, {"type": "null"}]}
    assert {name: props[name]["$ref"].rsplit("/", 1)[1] for name in props if props[name] and name != "lock"} == {
        "reboot": "Reboot", "rebuild": "Rebuild_2_96", "createImage": "CreateImage",
        "resize": "Resize", "os-migrateLive": "LiveMigrate_2_96", "os-resetState": "ResetState",
        "createBackup": "CreateBackup", "addSecurityGroup": "SecurityGroupArgument",
        "removeSecurityGroup": "SecurityGroupArgument"}
    metadata = schemas["MetadataBody"]["properties"]["metadata"]
    assert metadata["propertyNames"] == {"pattern": "^[a-zA-Z0-9-_:. ]{1,255}$"}
    assert metadata["additionalProperties"] == {"type": "string", "maxLength": 255}
    upload = doc["paths"]["/image/v2/images/{image_id}/file"]["put"]["requestBody"]["content"]
    assert "application/octet-stream" in upload
    error = schemas["ComputeFault"]["additionalProperties"]
    assert error["required"] == ["code", "message"]


def test_document_at_a_microversion(client):
    """?microversion=2.N: the bodies a request at 2.N may carry, and the header that asks for 2.N."""
    old = client.get("/openapi.json?microversion=2.1").get_json()
    new = client.get("/openapi.json").get_json()
    assert old["info"]["version"] == "2.1" and new["info"]["version"] == "2.96"
    assert "description" not in old["components"]["schemas"]["ServerUpdate_2_1"]["properties"]
    assert "description" in new["components"]["schemas"]["ServerUpdate"]["properties"]
    assert "personality" in old["components"]["schemas"]["ServerCreate_2_1"]["properties"]
    old_keypair = old["components"]["schemas"]["KeypairCreate_2_1"]
    assert "type" not in old_keypair["properties"] and old_keypair["properties"]["name"]["pattern"] == \
        "^[a-zA-Z0-9 _\\-]+$"
    header = next(p for p in old["paths"]["/v2.1/servers"]["get"]["parameters"]
                  if p["name"] == "OpenStack-API-Version")
    assert header["in"] == "header" and header["schema"]["enum"] == ["compute 2.1"]
    assert client.get("/openapi.json?microversion=2.97").status_code == 400


def test_servers_headers_versions_and_path_parameters(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0" and doc["servers"][0]["url"].startswith("http")
    paths = doc["paths"]
    for method in ("get", "delete"):
        params = {p["name"]: p for p in paths["/identity/v3/auth/tokens"][method]["parameters"]}
        assert params["X-Subject-Token"]["in"] == "header" and params["X-Subject-Token"]["required"] is True
    for path in ("/identity", "/identity/", "/image", "/image/"):
        assert paths[path]["get"]["responses"]["300"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Versions"}, path
    assert "300" not in paths["/image/versions"]["get"]["responses"]
    aggregate = next(p for p in paths["/v2.1/os-aggregates/{aggregate_id}"]["get"]["parameters"]
                     if p["name"] == "aggregate_id")
    assert aggregate["schema"]["type"] == "integer"
    service = next(p for p in paths["/v2.1/os-services/{service_id}"]["put"]["parameters"] if p["in"] == "path")
    assert service["schema"] == {"type": "string", "format": "uuid"}
    # the stateful phase's way from a create to what it created
    links = paths["/v2.1/servers"]["post"]["responses"]["2XX"]["links"]
    assert links["get_server_id"] == {"operationId": "servers.show_server:get:/v2.1/servers/{server_id}",
                                      "parameters": {"server_id": "$response.body#/server/id"}}
    assert "delete_image_id" in paths["/image/v2/images"]["post"]["responses"]["2XX"]["links"]


def test_every_view_that_reads_a_body_declares_it(app):
    """A POST/PUT/PATCH view takes its body through @body_schema (or is one of the documented special bodies), so
    the document cannot show less than what is validated; the rest read no body."""
    from app.openapi import SPECIAL_BODIES
    from app.request_body import declared_body
    import inspect

    undeclared = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not {"POST", "PUT", "PATCH"} & set(rule.methods) or declared_body(view) or \
                rule.endpoint in SPECIAL_BODIES or rule.endpoint == "servers.server_action" or \
                rule.rule.startswith("/placement"):  # Placement is not in the document (its own service)
            continue
        source = inspect.getsource(inspect.unwrap(view))
        if "json_body(" in source or "get_json(" in source:
            undeclared.append(rule.endpoint)
    assert not undeclared


def _widgets():
    """A blueprint of another module: POST /widgets/{id} loads its body with @body_schema and echoes it."""
    from flask import Blueprint
    from marshmallow import fields

    from app.compute.request_body import body_schema
    from app.compute.schemas import StrictSchema
    from app.policy import enforce

    class WidgetSchema(StrictSchema):
        size = fields.Integer(required=True)

    class WidgetV210Schema(StrictSchema):
        size = fields.Integer(required=True)
        colour = fields.String()

    bp = Blueprint("widgets", __name__)

    @bp.post("/widgets/<widget_id>")
    @enforce("project_member_api")
    @body_schema(WidgetSchema, root="widget", versions={"2.10": WidgetV210Schema}, siblings=("hints",))
    def make_widget(widget: dict, widget_id: str):
        return {"id": widget_id, **widget}
    return bp


def test_routes_added_later_appear_automatically(app):
    """A blueprint registered by any module shows up, with the body schema its view declares."""
    from app.microversion import APIVersion
    from app.openapi import build

    app.register_blueprint(_widgets(), url_prefix="/v2.1")

    def body_at(minor: int) -> dict:
        doc = build(app, APIVersion(2, minor))["paths"]["/v2.1/widgets/{widget_id}"]["post"]
        header = next(p for p in doc["parameters"] if p["name"] == "OpenStack-API-Version")
        assert header["schema"]["enum"] == [f"compute 2.{minor}"]
        return doc["requestBody"]["content"]["application/json"]
    # the schema the view loads with at the document's microversion
    assert body_at(9)["schema"]["properties"]["widget"] == {"$ref": "#/components/schemas/Widget"}
    body = body_at(10)
    assert body["schema"]["properties"]["widget"] == {"$ref": "#/components/schemas/WidgetV210"}
    assert body["schema"]["properties"]["hints"] == {"type": "object"}
    assert body["schema"]["additionalProperties"] is False and body["schema"]["required"] == ["widget"]


@pytest.mark.own_routes
def test_body_schema_validates_what_the_document_shows(app, request):
    """The view gets the loaded body; what the schema refuses (for the request's microversion) is Nova's 400."""
    app.register_blueprint(_widgets(), url_prefix="/v2.1")
    admin = request.getfixturevalue("admin")  # after the blueprint: the app takes no new routes once it has served

    def post(body: object, version: str = "2.1"):
        resp = app.test_client().post("/v2.1/widgets/w1", json=body,
                                      headers={**admin.headers, "OpenStack-API-Version": f"compute {version}"})
        return resp.status_code, resp.get_json()

    assert post({"widget": {"size": 3}, "hints": {}}) == (200, {"id": "w1", "size": 3})
    assert post({"widget": {"size": 3, "colour": "red"}}, "2.10") == (200, {"id": "w1", "size": 3, "colour": "red"})
    for body, version, message in (
            ({"widget": {"size": 3, "colour": "red"}}, "2.9", "Additional properties are not allowed ('colour'"),
            ({"widget": {"size": "big"}}, "2.1", "Invalid input for field/attribute size."),
            ({"widget": {}}, "2.1", "'size' is a required property"),
            ({"size": 3}, "2.1", "Additional properties are not allowed ('size' was unexpected)"),
            ({"widget": {"size": 3}, "hints": []}, "2.1", "Invalid input for field/attribute hints."),
            ([1], "2.1", "Malformed request body")):
        code, error = post(body, version)
        assert code == 400 and message in error["badRequest"]["message"], (body, error)


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(app, world, monkeypatch):
    """Schemathesis generates positive and negative requests for every operation: no 5xx, no trace."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    from tests.regex_strategies import reuse_regex_strategies
    from tests.unit.test_input_hardening import _real_ids

    reuse_regex_strategies(monkeypatch)  # the same cases, each pattern's strategy built once (not per operation)

    @schemathesis.serializer(PATCH_TYPE)
    def _json_patch(ctx, value) -> bytes:
        return json.dumps(value).encode()

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    real = _real_ids(world)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        names = [p.name for p in op.path_parameters]
        # DELETE gets generated ids only, so the world's resources survive for the other operations.
        fixed = {n: real[n] for n in names if n in real} if op.method.upper() != "DELETE" else {}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            for params in ({}, fixed) if fixed else ({},):
                try:
                    strategy = op.as_strategy(generation_mode=mode, path_parameters=params or None)
                except Exception:  # an operation with nothing to negate, for example
                    if mode is schemathesis.GenerationMode.POSITIVE:
                        raise
                    continue

                @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case):
                    for cred in (world.admin, world.b):
                        resp = case.call(headers={**cred.headers, **COMPUTE})
                        if resp.status_code >= 500 or "Traceback" in resp.text:
                            failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} "
                                            f"-> {resp.status_code} {resp.text[:300]}")
                try:
                    run()
                except Unsatisfiable:  # negative mode on an operation that has nothing to break
                    if mode is schemathesis.GenerationMode.POSITIVE:
                        raise
    assert operations >= 70
    assert not failures, "\n".join(failures[:20])
