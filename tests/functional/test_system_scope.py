"""A system-scoped cloud (OS_SYSTEM_SCOPE=all), through the unmodified openstack CLI and openstacksdk: Keystone's
admin APIs answer it; Nova's and Glance's refuse it with their 403 (their rules are all project-scoped)."""
from __future__ import annotations

import json

import pytest

from harness import osc_forkserver
from harness.stack import ADMIN_PASSWORD, VENV_BIN

pytestmark = pytest.mark.services


def system_env(stack) -> dict:
    env = {k: v for k, v in stack.os_env().items() if k not in ("OS_PROJECT_NAME", "OS_PROJECT_DOMAIN_NAME")}
    env["OS_SYSTEM_SCOPE"] = "all"
    return env


def run_cli(stack, *args: str):
    return osc_forkserver.run(str(VENV_BIN / "python"), list(args), system_env(stack), 180)


def test_system_scoped_cli(stack):
    token = run_cli(stack, "token", "issue", "-f", "json")
    assert token.returncode == 0, token.stderr
    assert json.loads(token.stdout)["system"] == "all"  # osc prints the system scope it got

    users = run_cli(stack, "user", "list", "-f", "json")
    assert users.returncode == 0, users.stderr
    assert "admin" in {u["Name"] for u in json.loads(users.stdout)}
    assert run_cli(stack, "project", "create", "made-by-system-admin").returncode == 0

    listed = run_cli(stack, "role", "assignment", "list", "--system", "all", "--names", "-f", "json")
    assert listed.returncode == 0, listed.stderr
    assert {"Role": "admin", "User": "admin@Default", "System": "all"}.items() <= json.loads(listed.stdout)[0].items()

    services = run_cli(stack, "compute", "service", "list")
    assert services.returncode == 1, services.stderr
    assert "403" in services.stderr and "Policy doesn't allow os_compute_api:os-services:list" in services.stderr
    images = run_cli(stack, "image", "list")
    assert images.returncode == 1 and "403" in images.stderr, images.stderr


def test_system_scoped_sdk(stack):
    import openstack.config
    import openstack.connection
    from openstack import exceptions

    # The system-scoped cloud `stratus bootstrap` writes into clouds.yaml, beside the project-scoped one
    config = openstack.config.OpenStackConfig(config_files=[str(stack.state_dir / "clouds.yaml")])
    conn = openstack.connection.Connection(config=config.get_one("stratus-system"))
    assert conn.config.config["auth"]["system_scope"] == "all" and conn.auth["password"] == ADMIN_PASSWORD
    assert conn.current_project_id is None
    assert "admin" in {u.name for u in conn.identity.users()}
    assignments = list(conn.identity.role_assignments(scope_system="all"))
    assert any(a.scope == {"system": {"all": True}} for a in assignments)
    with pytest.raises(exceptions.ForbiddenException):
        list(conn.compute.services())
    with pytest.raises(exceptions.ForbiddenException):
        list(conn.compute.servers(all_projects=True))
