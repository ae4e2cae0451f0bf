"""Identity with the unmodified openstack CLI, on every backend: the catalog's services, endpoints and regions;
application credentials (create, sign in with one to boot and delete a server, its deletion ends its token);
groups with members and project roles."""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from harness import osc_forkserver
from harness.stack import VENV_BIN

pytestmark = pytest.mark.services


def _member(stack, role: str = "member") -> tuple[str, str, str, str]:
    """A new project and user (name = user = project) with ``role`` on it: (name, password, project id, user id)."""
    ident, hdrs = f"{stack.url}/identity/v3", {"X-Auth-Token": stack.admin_token()}
    name = f"id-{uuid.uuid4().hex[:6]}"
    project = requests.post(f"{ident}/projects", json={"project": {"name": name}}, headers=hdrs,
                            timeout=30).json()["project"]
    user = requests.post(f"{ident}/users", json={"user": {"name": name, "password": "pw-" + name}}, headers=hdrs,
                         timeout=30).json()["user"]
    if role:
        stack.openstack("role", "add", "--project", name, "--user", name, role)
    return name, "pw-" + name, project["id"], user["id"]


def _app_cred_cli(stack, cred_id: str, secret: str, *args: str, check: bool = True):
    """The CLI signed in with an application credential only (OS_AUTH_TYPE=v3applicationcredential)."""
    env = {k: v for k, v in stack.os_env().items() if not k.startswith("OS_")}
    env.update(OS_AUTH_TYPE="v3applicationcredential", OS_AUTH_URL=f"{stack.url}/identity/v3",
               OS_IDENTITY_API_VERSION="3", OS_APPLICATION_CREDENTIAL_ID=cred_id,
               OS_APPLICATION_CREDENTIAL_SECRET=secret, OS_REGION_NAME="RegionOne")
    proc = osc_forkserver.run(str(VENV_BIN / "python"), list(args), env, 180)
    if check and proc.returncode != 0:
        raise AssertionError(f"openstack {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


def test_catalog_services_endpoints_regions(stack):
    services = {s["Type"]: s for s in stack.openstack_json("service", "list")}
    assert {"compute", "identity", "image"} <= set(services) and services["compute"]["Name"] == "nova"
    endpoints = stack.openstack_json("endpoint", "list", "--service", "compute")
    assert {e["Interface"] for e in endpoints} == {"public", "internal", "admin"}
    assert {e["URL"] for e in endpoints} == {f"{stack.url}/v2.1"} and {e["Region"] for e in endpoints} == \
        {"RegionOne"}

    region = stack.openstack_json("region", "create", "--description", "second region", "RegionTwo")
    assert region["region"] == "RegionTwo"
    assert {r["Region"] for r in stack.openstack_json("region", "list")} >= {"RegionOne", "RegionTwo"}
    svc = stack.openstack_json("service", "create", "--name", "metering", "--description", "Telemetry",
                               "metric")
    assert svc["type"] == "metric" and svc["enabled"] is True
    ep = stack.openstack_json("endpoint", "create", "--region", "RegionTwo", "metering", "public",
                              "http://metering.test:8041")
    assert ep["interface"] == "public" and ep["region"] == "RegionTwo" and ep["service_name"] == "metering"
    listed = stack.openstack_json("endpoint", "list", "--service", "metering")
    assert [(e["ID"], e["URL"]) for e in listed] == [(ep["id"], "http://metering.test:8041")]
    # The token's catalog (what clients discover endpoints from) has the new service.
    catalog = {c["Type"]: c for c in stack.openstack_json("catalog", "list")}
    assert "metric" in catalog and "http://metering.test:8041" in str(catalog["metric"]["Endpoints"])

    # A member reads neither services nor endpoints (Keystone's defaults) and writes nothing.
    name, password, _, _ = _member(stack)
    proc = stack.openstack("service", "list", user=name, password=password, project=name, check=False)
    assert proc.returncode != 0 and "403" in proc.stderr
    proc = stack.openstack("region", "create", "RegionThree", user=name, password=password, project=name,
                           check=False)
    assert proc.returncode != 0 and "403" in proc.stderr

    proc = stack.openstack("region", "delete", "RegionTwo", check=False)
    assert proc.returncode != 0  # it has an endpoint
    stack.openstack("endpoint", "delete", ep["id"])
    stack.openstack("service", "delete", "metering")
    stack.openstack("region", "delete", "RegionTwo")
    assert "metric" not in {s["Type"] for s in stack.openstack_json("service", "list")}
    assert "RegionTwo" not in {r["Region"] for r in stack.openstack_json("region", "list")}


def test_application_credential_drives_a_server(stack, image):
    name, password, project_id, user_id = _member(stack)
    as_user = {"user": name, "password": password, "project": name}
    cred = stack.openstack_json("application", "credential", "create", "--description", "CI pipeline",
                                "ci-cred", **as_user)
    assert cred["Name"] == "ci-cred" and cred["Secret"] and cred["Project ID"] == project_id
    assert "member" in str(cred["Roles"]) and cred["Unrestricted"] is False
    cred = {"id": cred["ID"], "secret": cred["Secret"]}
    listed = stack.openstack_json("application", "credential", "list", **as_user)
    assert [c["Name"] for c in listed] == ["ci-cred"]

    token = json.loads(_app_cred_cli(stack, cred["id"], cred["secret"], "token", "issue", "-f", "json").stdout)
    assert token["project_id"] == project_id and token["user_id"] == user_id
    server = json.loads(_app_cred_cli(stack, cred["id"], cred["secret"], "server", "create", "--image", image,
                                      "--flavor", "m1.nano", "ci-vm", "-f", "json").stdout)
    stack.wait_server(server["id"], "ACTIVE")
    shown = json.loads(_app_cred_cli(stack, cred["id"], cred["secret"], "server", "show", server["id"],
                                     "-f", "json").stdout)
    assert shown["project_id"] == project_id and shown["user_id"] == user_id
    _app_cred_cli(stack, cred["id"], cred["secret"], "server", "delete", server["id"])
    stack.wait_server(server["id"], "DELETED")
    # A restricted credential's sign-in cannot make more credentials.
    proc = _app_cred_cli(stack, cred["id"], cred["secret"], "application", "credential", "create", "more",
                         check=False)
    assert proc.returncode != 0 and "403" in proc.stderr

    compute = requests.get(f"{stack.url}/v2.1/servers", headers={"X-Auth-Token": token["id"]}, timeout=30)
    assert compute.status_code == 200
    stack.openstack("application", "credential", "delete", "ci-cred", **as_user)
    compute = requests.get(f"{stack.url}/v2.1/servers", headers={"X-Auth-Token": token["id"]}, timeout=30)
    assert compute.status_code == 401
    proc = _app_cred_cli(stack, cred["id"], cred["secret"], "server", "list", check=False)
    assert proc.returncode != 0 and "401" in proc.stderr
    assert stack.openstack_json("application", "credential", "list", **as_user) == []


def test_groups_members_and_roles(stack):
    name, password, project_id, user_id = _member(stack, role="")
    group = f"grp-{uuid.uuid4().hex[:6]}"
    created = stack.openstack_json("group", "create", "--description", "Operators", group)
    assert created["name"] == group and created["domain_id"] == "default"
    stack.openstack("group", "add", "user", group, name)
    assert f"{name} in group {group}" in stack.openstack("group", "contains", "user", group, name).stdout
    assert group in {g["Name"] for g in stack.openstack_json("group", "list")}
    assert [g["Name"] for g in stack.openstack_json("group", "list", "--user", name)] == [group]

    # The user has no role of its own on the project: the group's role lets it in.
    proc = stack.openstack("server", "list", user=name, password=password, project=name, check=False)
    assert proc.returncode != 0
    stack.openstack("role", "add", "--group", group, "--project", name, "member")
    assignments = stack.openstack_json("role", "assignment", "list", "--group", group, "--names")
    assert [(a["Role"], a["Group"], a["Project"]) for a in assignments] == [("member", f"{group}@Default",
                                                                            f"{name}@Default")]
    effective = stack.openstack_json("role", "assignment", "list", "--user", name, "--effective", "--names")
    assert {a["Role"] for a in effective} == {"member", "reader"}
    stack.openstack("server", "list", user=name, password=password, project=name)
    token = json.loads(stack.openstack("token", "issue", "-f", "json", user=name, password=password,
                                       project=name).stdout)
    assert token["project_id"] == project_id

    stack.openstack("group", "remove", "user", group, name)
    proc = stack.openstack("server", "list", user=name, password=password, project=name, check=False)
    assert proc.returncode != 0
    stack.openstack("role", "remove", "--group", group, "--project", name, "member")
    stack.openstack("group", "delete", group)
    assert group not in {g["Name"] for g in stack.openstack_json("group", "list")}

