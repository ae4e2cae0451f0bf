"""Server groups end to end on real processes: the openstack CLI, openstacksdk, and concurrent boots into one
group on four fake hosts (the scheduler's group filters plus the conductor's claim-time re-check)."""
from __future__ import annotations

import concurrent.futures
import re
import time

import openstack
import pytest
import requests

from harness.stack import BACKENDS, Stack, procfile_commands

pytestmark = pytest.mark.services

HOSTS = ["fake-1", "fake-2", "fake-3", "fake-4"]
MEMBER_QUOTA = 5


# PostgreSQL + Redis: concurrent claims really race there (SQLite serializes writers); the other scenario modules
# cover SQLite and MariaDB.
@pytest.fixture(scope="module", params=["postgresql-redis"])
def gstack(request, tmp_path_factory):
    backend = BACKENDS[request.param]
    missing = backend.missing()
    if missing:
        pytest.skip(f"!!! BACKEND {backend.name} UNAVAILABLE: {missing} !!!")
    st = Stack(tmp_path_factory.mktemp(f"groups-{backend.name}"), backend, compute_hosts=",".join(HOSTS),
               extra_env={"STRATUS_QUOTA_INSTANCES": "50", "STRATUS_QUOTA_CORES": "100",
                          "STRATUS_QUOTA_SERVER_GROUP_MEMBERS": str(MEMBER_QUOTA),
                          # Above the RAM weigher's 1.0, so soft-affinity wins over spreading on equal hosts.
                          "STRATUS_SOFT_AFFINITY_WEIGHT_MULTIPLIER": "2.0",
                          # No spreading by free RAM: equal hosts tie and go by name, so decisions taken on one
                          # view pick the same hosts (the scheduler's cache consumes RAM between decisions).
                          "STRATUS_RAM_WEIGHT_MULTIPLIER": "0"})
    try:
        st.start()
        st.openstack("image", "create", "--file", "/dev/null", "--disk-format", "raw", "--container-format", "bare",
                     "--public", "grp-image")
    except Exception:
        st.stop()
        raise
    yield st
    st.stop()


def session(stack: Stack, token: str | None = None) -> requests.Session:
    s = requests.Session()
    s.headers.update({"X-Auth-Token": token or stack.admin_token(), "OpenStack-API-Version": "compute 2.96"})
    return s


def image_id(stack: Stack) -> str:
    return stack.openstack_json("image", "show", "grp-image")["id"]


def boot(api: requests.Session, stack: Stack, name: str, group: str) -> requests.Response:
    return api.post(f"{stack.url}/v2.1/servers", json={
        "server": {"name": name, "imageRef": image_id(stack), "flavorRef": "42", "networks": "none"},
        "os:scheduler_hints": {"group": group}})


def wait_settled(api: requests.Session, stack: Stack, ids: list[str], timeout: float = 120) -> dict[str, dict]:
    """Every server ACTIVE or ERROR (as admin, so the host is visible)."""
    deadline = time.monotonic() + timeout
    while True:
        servers = {i: api.get(f"{stack.url}/v2.1/servers/{i}").json()["server"] for i in ids}
        if all(s["status"] in ("ACTIVE", "ERROR") for s in servers.values()):
            return servers
        assert time.monotonic() < deadline, {i: s["status"] for i, s in servers.items()}
        time.sleep(0.5)


def delete_all(api: requests.Session, stack: Stack, ids: list[str], timeout: float = 60) -> None:
    for i in ids:
        api.delete(f"{stack.url}/v2.1/servers/{i}")
    deadline = time.monotonic() + timeout
    while any(api.get(f"{stack.url}/v2.1/servers/{i}").status_code != 404 for i in ids):
        assert time.monotonic() < deadline, "servers were not deleted"
        time.sleep(0.5)


def test_cli_server_group_lifecycle(gstack):
    stack = gstack
    group = stack.openstack_json("server", "group", "create", "--policy", "anti-affinity", "cli-group")
    assert group["name"] == "cli-group" and group["policy"] == "anti-affinity"
    stack.openstack("server", "create", "--image", "grp-image", "--flavor", "m1.nano", "--hint",
                    f"group={group['id']}", "cli-member")
    server = stack.wait_server("cli-member", "ACTIVE")
    assert server["status"] == "ACTIVE"
    shown = stack.openstack_json("server", "group", "show", "cli-group")
    assert shown["members"] in ([server["id"]], server["id"])  # a list, or the CLI's comma-joined string
    listed = {g["Name"]: g for g in stack.openstack_json("server", "group", "list")}
    assert listed["cli-group"]["ID"] == group["id"]
    srv = session(stack).get(f"{stack.url}/v2.1/servers/{server['id']}").json()["server"]
    assert srv["server_groups"] == [group["id"]]  # 2.71+
    stack.openstack("server", "delete", "cli-member")
    stack.wait_server(server["id"], "DELETED")
    assert stack.openstack_json("server", "group", "show", "cli-group")["members"] in ([], "")
    stack.openstack("server", "group", "delete", "cli-group")
    proc = stack.openstack("server", "group", "show", group["id"], check=False)
    assert proc.returncode != 0 and "No ServerGroup found" in proc.stderr


def _project_user(stack: Stack, name: str, role: str) -> dict:
    stack.openstack("project", "create", "--domain", "default", f"{name}-proj")
    stack.openstack("user", "create", "--domain", "default", "--password", "pw-secret-1", "--project",
                    f"{name}-proj", name)
    stack.openstack("role", "add", "--project", f"{name}-proj", "--user", name, role)
    return {"auth_url": f"{stack.url}/identity/v3", "username": name, "password": "pw-secret-1",
            "project_name": f"{name}-proj", "user_domain_name": "Default", "project_domain_name": "Default"}


def sdk(auth: dict) -> openstack.connection.Connection:
    return openstack.connect(auth=auth, region_name="RegionOne", identity_api_version="3", compute_api_version="2.96")


def test_sdk_server_groups_and_negative_cases(gstack):
    stack = gstack
    alice = sdk(_project_user(stack, "sg-alice", "member"))
    bob = sdk(_project_user(stack, "sg-bob", "member"))
    reader = _project_user(stack, "sg-rita", "reader")
    reader["project_name"] = "sg-alice-proj"
    stack.openstack("role", "add", "--project", "sg-alice-proj", "--user", "sg-rita", "reader")
    reader_conn = sdk(reader)

    group = alice.compute.create_server_group(name="sdk-group", policy="anti-affinity",
                                              rules={"max_server_per_host": 2})
    assert group.policy == "anti-affinity" and group.rules == {"max_server_per_host": 2}
    assert alice.compute.get_server_group(group.id).name == "sdk-group"
    assert [g.id for g in alice.compute.server_groups()] == [group.id]
    assert [g.id for g in reader_conn.compute.server_groups()] == [group.id]
    # Another project's group is not found, neither to show, nor to delete, nor to boot into.
    with pytest.raises(openstack.exceptions.NotFoundException):
        bob.compute.get_server_group(group.id)
    with pytest.raises(openstack.exceptions.NotFoundException):
        bob.compute.delete_server_group(group.id, ignore_missing=False)
    bob_api = session(stack, bob.auth_token)
    r = boot(bob_api, stack, "intruder", group.id)
    assert r.status_code == 400 and r.json()["badRequest"]["message"] == \
        f"Instance group {group.id} could not be found."
    r = boot(bob_api, stack, "bad-hint", "not-a-uuid")
    assert r.status_code == 400 and "is not a 'uuid'" in r.json()["badRequest"]["message"]
    # A reader may read but not create.
    with pytest.raises(openstack.exceptions.ForbiddenException):
        reader_conn.compute.create_server_group(name="nope", policy="affinity")
    # Bad policy: Nova's 400.
    r = session(stack, alice.auth_token).post(f"{stack.url}/v2.1/os-server-groups", json={
        "server_group": {"name": "bad", "policy": "best-effort"}})
    assert r.status_code == 400 and "'best-effort' is not one of" in r.json()["badRequest"]["message"]
    # The CLI sends policies (before 2.64) or policy (2.64+) as the microversion requires.
    old = stack.openstack_json("server", "group", "create", "--policy", "affinity", "--os-compute-api-version",
                               "2.13", "old-style", user="sg-alice", password="pw-secret-1",
                               project="sg-alice-proj")
    assert old["policies"] in (["affinity"], "affinity")
    alice.compute.delete_server_group(group.id, ignore_missing=False)
    alice.compute.delete_server_group(old["id"], ignore_missing=False)
    assert list(alice.compute.server_groups()) == []


@pytest.mark.slow
def test_concurrent_boots_into_anti_affinity_group_land_on_distinct_hosts(gstack):
    stack = gstack
    api = session(stack)
    group = api.post(f"{stack.url}/v2.1/os-server-groups", json={
        "server_group": {"name": "spread", "policy": "anti-affinity"}}).json()["server_group"]
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        replies = list(pool.map(lambda n: boot(session(stack), stack, f"spread-{n}", group["id"]),
                                range(len(HOSTS))))
    assert all(r.status_code == 202 for r in replies), [r.text for r in replies]
    ids = [r.json()["server"]["id"] for r in replies]
    servers = wait_settled(api, stack, ids)
    assert {s["status"] for s in servers.values()} == {"ACTIVE"}, {i: s.get("fault") for i, s in servers.items()}
    assert sorted(s["OS-EXT-SRV-ATTR:host"] for s in servers.values()) == HOSTS

    fifth = boot(api, stack, "spread-5", group["id"])
    assert fifth.status_code == 202
    extra = fifth.json()["server"]["id"]
    server = wait_settled(api, stack, [extra])[extra]
    assert server["status"] == "ERROR"
    assert "No valid host was found" in server["fault"]["message"]
    assert "ServerGroupAntiAffinityFilter removed 4 of 4 hosts" in server["fault"]["message"]

    members = api.get(f"{stack.url}/v2.1/os-server-groups/{group['id']}").json()["server_group"]["members"]
    assert sorted(members) == sorted([*ids, extra])  # an ERROR server stays a member until deleted
    # server_group_members quota (5 here): a sixth member is refused before anything is written.
    r = boot(api, stack, "spread-6", group["id"])
    assert r.status_code == 403 and r.json()["forbidden"]["message"] == "Quota exceeded, too many servers in group"

    delete_all(api, stack, [*ids, extra])
    assert api.get(f"{stack.url}/v2.1/os-server-groups/{group['id']}").json()["server_group"]["members"] == []
    assert api.delete(f"{stack.url}/v2.1/os-server-groups/{group['id']}").status_code == 204


@pytest.mark.slow
def test_concurrent_boots_into_affinity_group_share_one_host(gstack):
    stack = gstack
    api = session(stack)
    group = api.post(f"{stack.url}/v2.1/os-server-groups", json={
        "server_group": {"name": "together", "policy": "affinity"}}).json()["server_group"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda n: boot(session(stack), stack, f"together-{n}", group["id"]), range(4)))
    ids = [r.json()["server"]["id"] for r in replies]
    servers = wait_settled(api, stack, ids)
    assert {s["status"] for s in servers.values()} == {"ACTIVE"}, {i: s.get("fault") for i, s in servers.items()}
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in servers.values()}) == 1
    delete_all(api, stack, ids)
    assert api.delete(f"{stack.url}/v2.1/os-server-groups/{group['id']}").status_code == 204


def _schedules_done(stack: Stack) -> int:
    return len(re.findall(r"Task stratus\.scheduler\.schedule\[[^\]]+\] succeeded", stack.log("scheduler")))


def _wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.slow
def test_stale_schedules_are_corrected_at_claim_time(gstack):
    """Force the race: four boots are scheduled on the same view (the conductor is stopped, so nothing is claimed
    between the decisions); when the conductor comes back, its claims must still spread them over four hosts."""
    stack = gstack
    api = session(stack)
    group = api.post(f"{stack.url}/v2.1/os-server-groups", json={
        "server_group": {"name": "stale", "policy": "anti-affinity"}}).json()["server_group"]
    commands = procfile_commands()
    stack.stop_process("scheduler")
    ids = [boot(api, stack, f"stale-{n}", group["id"]).json()["server"]["id"] for n in range(len(HOSTS))]
    stack.stop_process("conductor")
    try:
        before = _schedules_done(stack)
        stack.start_process("scheduler", commands["scheduler"])
        _wait_for(lambda: _schedules_done(stack) - before >= len(HOSTS), "four scheduling decisions")
    finally:
        stack.start_process("conductor", commands["conductor"])
    servers = wait_settled(api, stack, ids)
    assert {s["status"] for s in servers.values()} == {"ACTIVE"}, {i: s.get("fault") for i, s in servers.items()}
    assert sorted(s["OS-EXT-SRV-ATTR:host"] for s in servers.values()) == HOSTS
    log = stack.log("conductor")
    assert "ServerGroupAntiAffinityFilter rejects" in log and "at claim time" in log
    assert "scheduling again" in log  # the fourth boot's three chosen hosts were all taken
    delete_all(api, stack, ids)
    assert api.delete(f"{stack.url}/v2.1/os-server-groups/{group['id']}").status_code == 204


@pytest.mark.slow
def test_soft_policies_weigh_but_never_refuse(gstack):
    stack = gstack
    api = session(stack)
    together = stack.openstack_json("server", "group", "create", "--policy", "soft-affinity", "soft-together")
    apart = stack.openstack_json("server", "group", "create", "--policy", "soft-anti-affinity", "soft-apart")
    ids: dict[str, list[str]] = {"together": [], "apart": []}
    for n in range(3):  # one at a time, so each boot's scheduler sees the previous members placed
        ids["together"].append(boot(api, stack, f"together-{n}", together["id"]).json()["server"]["id"])
        wait_settled(api, stack, ids["together"][-1:])
    for n in range(len(HOSTS) + 1):
        ids["apart"].append(boot(api, stack, f"apart-{n}", apart["id"]).json()["server"]["id"])
        wait_settled(api, stack, ids["apart"][-1:])
    servers = wait_settled(api, stack, [*ids["together"], *ids["apart"]])
    assert {s["status"] for s in servers.values()} == {"ACTIVE"}, {i: s.get("fault") for i, s in servers.items()}
    assert len({servers[i]["OS-EXT-SRV-ATTR:host"] for i in ids["together"]}) == 1
    apart_hosts = [servers[i]["OS-EXT-SRV-ATTR:host"] for i in ids["apart"]]
    assert sorted(set(apart_hosts[:len(HOSTS)])) == HOSTS  # spread first; the fifth shares a host, not ERROR
    delete_all(api, stack, [*ids["together"], *ids["apart"]])
    stack.openstack("server", "group", "delete", "soft-together", "soft-apart")
