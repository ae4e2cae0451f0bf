"""The contract oracle itself (tests/contract/, tests/conftest.py): it covers every route, it catches a key Nova's
schema does not allow, it fails the test that received such a response, and the app's recorder is inert unless
tests turn it on and never writes secrets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.response_log import ENV
from tests.contract import allowlist, compute_schemas
from tests.contract.compute_schemas import ENDPOINTS, NO_SCHEMA, AdminPass, Amended, ByAction, Fixed, Versioned
from tests.contract.oracle import ResponseLog, check
from tests.unit.inprocess import COMPUTE, PUBLIC_KEY, inprocess_conductor, world  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]


def _routes(app) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_compute_route_has_a_schema_or_is_listed_without_one(app):
    """A new route must be added to ENDPOINTS or NO_SCHEMA; an entry for a route that is gone must go."""
    routes = {r for r in _routes(app) if not compute_schemas.not_compute(r[1])}
    unmapped = sorted(routes - ENDPOINTS.keys() - NO_SCHEMA.keys())
    assert not unmapped, f"routes in neither compute_schemas.ENDPOINTS nor NO_SCHEMA: {unmapped}"
    stale = sorted((ENDPOINTS.keys() | NO_SCHEMA.keys()) - routes)
    assert not stale, f"compute_schemas entries for routes the app does not serve: {stale}"
    assert not ENDPOINTS.keys() & NO_SCHEMA.keys()


def _leaves(ref):
    if isinstance(ref, ByAction):
        for r in ref.actions.values():
            yield from _leaves(r)
    elif isinstance(ref, AdminPass):
        yield from _leaves(ref.plain)
        yield from _leaves(ref.with_pass)
    elif isinstance(ref, Amended):
        yield from _leaves(ref.ref)
    elif isinstance(ref, (Fixed, Versioned)):
        yield ref


def test_every_named_schema_exists_in_tempest():
    for ref in (leaf for entry in ENDPOINTS.values() for leaf in _leaves(entry)):
        modules = [ref.module] if isinstance(ref, Fixed) else [i["schema"] for i in ref.client.schema_versions_info]
        assert any(hasattr(m, ref.name) for m in modules), ref
        assert all("status_code" in getattr(m, ref.name) for m in modules if hasattr(m, ref.name)), ref


def test_allow_list_entries_give_a_reason():
    for known in allowlist.KNOWN:
        assert len(known.reason) > 20 and known.complaint, known


def _recorded(log: ResponseLog, method: str, rule: str) -> dict:
    return next(r for r in reversed(list(log.new_records())) if (r["method"], r["rule"]) == (method, rule))


def test_an_extra_response_key_is_a_violation(client, world):
    log = ResponseLog(Path(os.environ[ENV]))
    log.offset = Path(os.environ[ENV]).stat().st_size
    resp = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 200
    record = _recorded(log, "GET", "/v2.1/servers/<server_id>")
    assert record["microversion"] == "2.96" and record["body"] == resp.get_json()
    assert check(record) == []

    record["body"]["server"]["stratus:extra"] = 1
    complaints = [v.complaint for v in check(record)]
    assert any("'stratus:extra' was unexpected" in c for c in complaints), complaints
    del record["body"]["server"]["stratus:extra"], record["body"]["server"]["status"]
    assert any("'status' is a required property" in v.complaint for v in check(record))


def test_a_route_without_a_mapping_is_a_violation():
    record = {"method": "GET", "rule": "/v2.1/os-new-thing", "status": 200, "kind": "empty", "body": None}
    assert "neither" in check(record)[0].complaint
    action = {"method": "POST", "rule": "/v2.1/servers/<server_id>/action", "action": "os-newAction",
              "status": 202, "kind": "empty", "body": None}
    assert "os-newAction" in check(action)[0].complaint


def test_the_fixture_fails_a_test_that_receives_an_extra_key(tmp_path):
    """A whole pytest run with the suite's conftest: the test whose API answer carries a key Nova's schema does not
    allow fails, naming it; the same request without the key passes."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa\n"
                                          "from tests.unit.conftest import *  # noqa\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import json
        import pytest
        from flask import request

        @pytest.fixture
        def tampered(app):
            @app.after_request
            def add_key(resp):
                if request.path == "/v2.1/flavors":
                    body = resp.get_json()
                    body["flavors_extra"] = []
                    resp.set_data(json.dumps(body))
                return resp
            return app

        def test_tampered(tampered, client, admin):
            assert client.get("/v2.1/flavors", headers=admin.headers).status_code == 200

        def test_untouched(client, admin):
            assert client.get("/v2.1/flavors", headers=admin.headers).status_code == 200
    """))
    env = {k: v for k, v in os.environ.items() if k != ENV and k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(tmp_path), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "FAILED test_inner.py::test_tampered" in out, out
    assert "GET /v2.1/flavors @ 2.1 -> 200 (compute.v2_1.flavors.list_flavors): Additional properties are not " \
           "allowed ('flavors_extra' was unexpected)" in out, out


def test_recorder_masks_secrets_and_never_records_request_bodies(client, world, make_user):
    path = Path(os.environ[ENV])
    start = path.stat().st_size
    created = client.post("/v2.1/os-keypairs", json={"keypair": {"name": "gen"}},
                          headers={**world.a.headers, "OpenStack-API-Version": "compute 2.91"})
    assert "PRIVATE KEY" in created.get_json()["keypair"]["private_key"]
    server = client.post("/v2.1/servers", json={"server": {
        "name": "secret-vm", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
        "adminPass": "request-side-secret"}}, headers={**world.a.headers, **COMPUTE})
    assert server.status_code == 202
    with open(path, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode()
    assert "PRIVATE KEY" not in text and "request-side-secret" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    keypair = next(r for r in lines if r["rule"] == "/v2.1/os-keypairs" and r["method"] == "POST")
    assert keypair["body"]["keypair"]["private_key"] == "***"
    boot = next(r for r in lines if r["rule"] == "/v2.1/servers" and r["method"] == "POST")
    assert boot["body"]["server"]["adminPass"] == "***"


def test_recorder_is_inert_without_its_variable(stratus_env, monkeypatch, tmp_path):
    from app import create_app
    monkeypatch.delenv(ENV)
    app = create_app({"TESTING": True})
    assert not any(getattr(f, "__module__", "") == "app.response_log"
                   or "response_log" in getattr(f, "__qualname__", "")
                   for f in app.after_request_funcs.get(None, []))
    monkeypatch.setenv(ENV, str(tmp_path / "on.jsonl"))
    assert len(create_app({"TESTING": True}).after_request_funcs[None]) == \
        len(app.after_request_funcs.get(None, [])) + 1


@pytest.mark.parametrize("version, allowed", [("2.34", False), ("2.35", True)])
def test_keypairs_links_amendment_follows_nova(version, allowed):
    record = {"method": "GET", "rule": "/v2.1/os-keypairs", "microversion": version, "status": 200,
              "kind": "application/json", "body": {"keypairs": [], "keypairs_links": [
                  {"href": "http://x/v2.1/os-keypairs?marker=k", "rel": "next"}]}}
    assert (check(record) == []) is allowed


@pytest.mark.parametrize("status, location, allowed", [(204, None, True), (201, None, False),
                                                       (201, "http://x/v2.1/servers/s/tags/t", True)])
def test_tag_update_location_follows_nova(status, location, allowed):
    """Nova's 204 (the server already has the tag) carries no Location; its 201 does."""
    record = {"method": "PUT", "rule": "/v2.1/servers/<server_id>/tags/<tag>", "microversion": "2.26",
              "status": status, "kind": "empty", "body": None, "location": location}
    assert (check(record) == []) is allowed
