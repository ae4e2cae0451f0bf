"""Policy check strings and rule files (oslo.policy semantics, Nova's secure-RBAC defaults)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.context import RequestContext
from app.policy import Enforcer, load_enforcer, register
from app.policy_rules import PolicyError, effective_roles, evaluate, parse

REPO = Path(__file__).resolve().parents[2]


def ctx(*roles: str, project: str | None = "p1") -> RequestContext:
    return RequestContext(user_id="u1", user_name="u", project_id=project, project_name="p", roles=roles,
                          request_id="req-1")


class Rules(dict):
    pass


@pytest.mark.parametrize("text,ok", [
    ("@", True), ("!", False), ("", True), ("role:admin", False), ("role:member", True), ("role:reader", True),
    ("role:member and project_id:%(project_id)s", True), ("role:member and project_id:%(other)s", False),
    ("not role:admin", True), ("role:admin or (role:member and user_id:%(user_id)s)", True),
    ("(role:admin or role:member) and not project_id:p2", True), ("rule:missing", False),
    ("rule:missing or @", True), ("is_admin:True", False),
])
def test_check_strings(text, ok):
    creds = {"roles": effective_roles(["member"]), "project_id": "p1", "user_id": "u1", "is_admin": False}
    target = {"project_id": "p1", "user_id": "u1", "other": "p9"}
    assert evaluate(parse(text), target, creds, Rules()) is ok


@pytest.mark.parametrize("text", ["role:admin and", "(role:admin", "role:admin)", "admin", "role:", "and @",
                                  "role:a or or role:b"])
def test_malformed_check_strings(text):
    with pytest.raises(PolicyError):
        parse(text)


def test_defaults_equal_todays_levels():
    register("test:member-thing", "project_member_api")
    e = Enforcer()
    assert e.allowed("test:member-thing", "project_member_api", ctx("member"), "p1")
    assert not e.allowed("test:member-thing", "project_member_api", ctx("member"), "p2")
    assert e.allowed("test:member-thing", "project_member_api", ctx("admin"), "p2")
    assert not e.allowed("test:member-thing", "project_member_api", ctx("reader"), "p1")
    assert not e.allowed("test:member-thing", "project_member_api", ctx("member", project=None), None)
    assert e.allowed(None, "project_reader_api", ctx("reader"), None)
    assert not e.allowed(None, "admin_api", ctx("member"), None)
    assert not e.allowed("no:such:rule", "authenticated", ctx("admin"), None)  # unknown names fail closed


def test_file_overrides_by_name_and_base_rules(tmp_path):
    register("test:create", "project_member_api")
    f = tmp_path / "policy.yaml"
    f.write_text('"test:create": "rule:admin_api"\nproject_reader_api: "role:reader and user_id:%(user_id)s"\n')
    e = load_enforcer(str(f))
    assert not e.allowed("test:create", "project_member_api", ctx("member"), "p1")
    assert e.allowed("test:create", "project_member_api", ctx("admin"), "p1")
    assert e.allowed(None, "project_reader_api", ctx("reader"), "p2")  # the overridden base rule


@pytest.mark.parametrize("content,message", [
    ('"test:x": "role:admin and"\n', "rule 'test:x'"), ("- a list\n", "must map rule names"),
    ("a: [unclosed\n", "not valid YAML")])
def test_bad_policy_files(tmp_path, content, message):
    f = tmp_path / "policy.yaml"
    f.write_text(content)
    with pytest.raises(PolicyError, match=message.replace("[", r"\[")):
        load_enforcer(str(f))


def test_startup_fails_on_malformed_file_and_dump_prints_defaults(tmp_path):
    flask = str(Path(sys.executable).parent / "flask")
    env = {"STRATUS_STATE_DIR": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    dump = subprocess.run([flask, "--app", "app", "stratus", "policy-dump"], cwd=REPO, env=env, capture_output=True,
                          text=True)
    assert dump.returncode == 0, dump.stderr
    assert "os_compute_api:servers:create: rule:project_member_or_admin" in dump.stdout
    assert "os_compute_api:os-aggregates:add_host: rule:admin_api" in dump.stdout
    (tmp_path / "dump.yaml").write_text(dump.stdout)
    assert load_enforcer(str(tmp_path / "dump.yaml")).overrides  # the dump is a valid policy file
    bad = tmp_path / "bad.yaml"
    bad.write_text('"os_compute_api:servers:create": "role:member or"\n')
    proc = subprocess.run([flask, "--app", "app", "stratus", "policy-dump"], cwd=REPO,
                          env={**env, "STRATUS_POLICY_FILE": str(bad)}, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "os_compute_api:servers:create" in proc.stderr and "unexpected end of check string" in proc.stderr


def test_named_endpoints_exist_and_every_compute_route_has_a_rule_name(tmp_path, monkeypatch):
    """The endpoint → Nova name table follows the views; a renamed view must not silently lose its name."""
    from app.policy import DEFAULTS
    from app.policy_names import ENDPOINT_RULES

    monkeypatch.setenv("STRATUS_STATE_DIR", str(tmp_path))
    from app import create_app
    app = create_app()
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(ENDPOINT_RULES) <= endpoints
    assert all(name in DEFAULTS for name, _ in ENDPOINT_RULES.values())
    for name in ("os_compute_api:os-aggregates:create", "os_compute_api:os-flavor-extra-specs:update",
                 "os_compute_api:os-migrations:index", "os_compute_api:os-simple-tenant-usage:show"):
        assert name in DEFAULTS
