"""Quotas and limits against real processes: the openstack CLI, openstacksdk and plain HTTP, on every backend."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import openstack
import pytest
import requests
from openstack import exceptions as sdk_exc

from harness.stack import Stack

pytestmark = pytest.mark.services

MEMBER_PW = "member-pw-123"
READER_PW = "reader-pw-123"


class Project:
    """A fresh project with a member and a reader, made through the Identity API as a client would."""

    def __init__(self, stack: Stack, admin: requests.Session):
        self.stack = stack
        self.name = f"quota-{uuid.uuid4().hex[:8]}"
        ident = f"{stack.url}/identity/v3"
        self.id = admin.post(f"{ident}/projects", json={"project": {"name": self.name, "domain_id": "default"}}
                             ).json()["project"]["id"]
        roles = {r["name"]: r["id"] for r in admin.get(f"{ident}/roles").json()["roles"]}
        self.user_ids: dict[str, str] = {}
        for who, pw, role in (("member", MEMBER_PW, "member"), ("member2", MEMBER_PW, "member"),
                              ("reader", READER_PW, "reader")):
            user = admin.post(f"{ident}/users", json={"user": {"name": f"{self.name}-{who}", "password": pw,
                                                               "domain_id": "default"}}).json()["user"]
            admin.put(f"{ident}/projects/{self.id}/users/{user['id']}/roles/{roles[role]}").raise_for_status()
            self.user_ids[who] = user["id"]

    def user(self, who: str) -> str:
        return f"{self.name}-{who}"

    def session(self, who: str) -> requests.Session:
        s = requests.Session()
        s.headers["X-Auth-Token"] = self.stack.token(self.user(who), READER_PW if who == "reader" else MEMBER_PW,
                                                     self.name)
        s.headers["OpenStack-API-Version"] = "compute 2.96"
        return s

    def sdk(self, who: str) -> openstack.connection.Connection:
        return connect(self.stack, self.user(who), MEMBER_PW if who == "member" else READER_PW, self.name)


def connect(stack: Stack, user: str, password: str, project: str) -> openstack.connection.Connection:
    return openstack.connect(auth_url=f"{stack.url}/identity/v3", username=user, password=password,
                             project_name=project, user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne", load_envvars=False, load_yaml_config=False)


@pytest.fixture(scope="module")
def world(stack):
    admin = requests.Session()
    admin.headers.update({"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.96"})
    img = admin.post(f"{stack.url}/image/v2/images", json={"name": "quota-image", "disk_format": "raw", "visibility": "public",
                                                           "container_format": "bare"}).json()
    admin.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=b"q" * 512,
              headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return stack, admin, img["id"]


def server_body(image_id: str, name: str, **extra) -> dict:
    return {"server": {"name": name, "imageRef": image_id, "flavorRef": "42", "networks": "none", **extra}}


def detail(admin: requests.Session, stack: Stack, project_id: str) -> dict:
    r = admin.get(f"{stack.url}/v2.1/os-quota-sets/{project_id}/detail")
    assert r.status_code == 200, r.text
    return r.json()["quota_set"]


def live_servers(admin: requests.Session, stack: Stack, project_id: str) -> list[str]:
    r = admin.get(f"{stack.url}/v2.1/servers", params={"all_tenants": "1", "project_id": project_id})
    assert r.status_code == 200, r.text
    return [s["id"] for s in r.json()["servers"]]


def delete_all(admin: requests.Session, stack: Stack, project_id: str, timeout: float = 180) -> None:
    """Delete the project's servers and wait until its usage is back to zero (quota released on delete)."""
    for sid in live_servers(admin, stack, project_id):
        r = admin.delete(f"{stack.url}/v2.1/servers/{sid}")
        assert r.status_code == 204, r.text
    deadline = time.monotonic() + timeout
    while detail(admin, stack, project_id)["instances"]["in_use"] and time.monotonic() < deadline:
        time.sleep(0.5)
    usage = detail(admin, stack, project_id)
    assert (usage["instances"]["in_use"], usage["cores"]["in_use"], usage["ram"]["in_use"]) == (0, 0, 0)


# --- openstack CLI -------------------------------------------------------------------------------------------------

def cli_quota(stack: Stack, *args: str, column: str = "Limit", **kw) -> dict:
    """`openstack quota show --compute ...` as {resource: value} (the CLI's names, e.g. key-pairs, properties)."""
    return {row["Resource"]: row[column] for row in stack.openstack_json("quota", "show", "--compute", *args, **kw)}


def cli_limits(stack: Stack, *args: str, **kw) -> dict:
    return {row["Name"]: row["Value"] for row in stack.openstack_json("limits", "show", "--absolute", *args, **kw)}


def test_cli_quota_show_set_delete_and_limits(world):
    stack, admin, image_id = world
    proj = Project(stack, admin)
    shown = cli_quota(stack, proj.name)
    assert (shown["instances"], shown["cores"], shown["ram"], shown["server-groups"]) == (10, 20, 51200, 10)

    stack.openstack("quota", "set", "--instances", "3", "--cores", "7", "--ram", "4096", "--properties", "2",
                    proj.name)
    shown = cli_quota(stack, proj.name)
    assert (shown["instances"], shown["cores"], shown["ram"], shown["properties"]) == (3, 7, 4096, 2)

    # The admin reads the project's /limits; its member reads its own.
    absolute = cli_limits(stack, "--project", proj.name)
    assert absolute["max_total_instances"] == 3 and absolute["max_total_cores"] == 7
    assert absolute["max_server_meta"] == 2 and absolute["total_instances_used"] == 0
    own = cli_limits(stack, user=proj.user("member"), password=MEMBER_PW, project=proj.name)
    assert own["max_total_ram_size"] == 4096 and own["max_server_groups"] == 10

    # The member boots within quota; usage shows in `quota show --usage` and /limits.
    r = proj.session("member").post(f"{stack.url}/v2.1/servers", json=server_body(image_id, "cli-q"))
    assert r.status_code == 202, r.text
    in_use = cli_quota(stack, "--usage", proj.name, column="In Use")
    assert (in_use["instances"], in_use["cores"], in_use["ram"]) == (1, 1, 128)
    assert cli_limits(stack, "--project", proj.name)["total_ram_used"] == 128

    # A reader cannot change quotas: the CLI exits non-zero with Nova's 403.
    proc = stack.openstack("quota", "set", "--instances", "50", proj.name, user=proj.user("reader"),
                           password=READER_PW, project=proj.name, check=False)
    assert proc.returncode != 0 and "403" in proc.stderr
    # Bad values and limits below current usage: 400 (below usage is allowed with --force).
    proc = stack.openstack("quota", "set", "--instances", "-5", proj.name, check=False)
    assert proc.returncode != 0 and "-5 is less than the minimum of -1" in proc.stderr
    proc = stack.openstack("quota", "set", "--instances", "0", proj.name, check=False)
    assert proc.returncode != 0 and "must be greater than or equal to already used and reserved 1" in proc.stderr
    stack.openstack("quota", "set", "--force", "--instances", "0", proj.name)
    assert cli_quota(stack, proj.name)["instances"] == 0

    stack.openstack("quota", "delete", "--compute", proj.name)
    shown = cli_quota(stack, proj.name)
    assert (shown["instances"], shown["cores"], shown["properties"]) == (10, 20, 128)
    delete_all(admin, stack, proj.id)


def test_cli_default_quotas(world):
    """`quota set --default` writes the default quota class, which every project without its own limit uses."""
    stack, admin, _ = world
    try:
        stack.openstack("quota", "set", "--default", "--key-pairs", "77")
        assert cli_quota(stack, "--default")["key-pairs"] == 77
        proj = Project(stack, admin)
        assert cli_quota(stack, proj.name)["key-pairs"] == 77
        r = admin.get(f"{stack.url}/v2.1/os-quota-class-sets/default")
        assert r.status_code == 200 and r.json()["quota_class_set"]["key_pairs"] == 77
        assert r.json()["quota_class_set"]["id"] == "default"
    finally:
        stack.openstack("quota", "set", "--default", "--key-pairs", "100")


# --- openstacksdk --------------------------------------------------------------------------------------------------

def test_sdk_quota_sets(world):
    stack, admin, image_id = world
    proj = Project(stack, admin)
    conn = connect(stack, "admin", stack.env["STRATUS_ADMIN_PASSWORD"], "admin")

    qs = conn.compute.get_quota_set(proj.id)
    assert qs.instances == 10 and qs.server_group_members == 10
    updated = conn.compute.update_quota_set(proj.id, instances=4, cores=-1, key_pairs=5)
    assert (updated.instances, updated.cores, updated.key_pairs) == (4, -1, 5)
    assert conn.compute.get_quota_set_defaults(proj.id).instances == 10

    member = proj.sdk("member")
    server = member.compute.create_server(name="sdk-q", image_id=image_id, flavor_id="42", networks="none")
    with_usage = conn.compute.get_quota_set(proj.id, usage=True)
    assert with_usage.usage["instances"] == 1 and with_usage.instances == 4

    # The project's reader may read its own project's quotas but not change them.
    reader = proj.sdk("reader")
    assert reader.compute.get_quota_set(proj.id).instances == 4
    with pytest.raises(sdk_exc.ForbiddenException):
        reader.compute.update_quota_set(proj.id, instances=40)
    with pytest.raises(sdk_exc.ForbiddenException):
        reader.compute.revert_quota_set(proj.id)
    # ...nor read another project's.
    other = Project(stack, admin)
    with pytest.raises(sdk_exc.ForbiddenException):
        reader.compute.get_quota_set(other.id)

    with pytest.raises(sdk_exc.BadRequestException, match="less than the minimum of -1"):
        conn.compute.update_quota_set(proj.id, instances=-5)
    with pytest.raises(sdk_exc.BadRequestException, match="already used and reserved 1"):
        conn.compute.update_quota_set(proj.id, instances=0)
    assert conn.compute.get_quota_set(proj.id).instances == 4  # nothing half-written

    conn.compute.revert_quota_set(proj.id)
    qs = conn.compute.get_quota_set(proj.id)
    assert (qs.instances, qs.cores, qs.key_pairs) == (10, 20, 100)
    limits = member.compute.get_limits()
    assert limits.absolute.instances_used == 1 and limits.absolute.total_cores_used == 1
    assert server.id in live_servers(admin, stack, proj.id)
    delete_all(admin, stack, proj.id)


# --- enforcement on server create -------------------------------------------------------------------------------

def test_over_quota_creates(world):
    stack, admin, image_id = world
    proj = Project(stack, admin)
    member = proj.session("member")
    r = admin.put(f"{stack.url}/v2.1/os-quota-sets/{proj.id}",
                  json={"quota_set": {"instances": 3, "cores": 10, "metadata_items": 2}})
    assert r.status_code == 200, r.text
    assert "id" not in r.json()["quota_set"] and r.json()["quota_set"]["instances"] == 3

    # Multi-create shrinks to what fits when min_count still fits (Nova).
    r = member.post(f"{stack.url}/v2.1/servers",
                    json=server_body(image_id, "multi", min_count=2, max_count=5, return_reservation_id=True))
    assert r.status_code == 202, r.text
    assert len(live_servers(admin, stack, proj.id)) == 3

    r = member.post(f"{stack.url}/v2.1/servers", json=server_body(image_id, "one-more"))
    assert r.status_code == 403
    assert r.json() == {"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but "
                                                              "already used 3 of 3 instances"}}
    r = member.post(f"{stack.url}/v2.1/servers", json=server_body(image_id, "range", min_count=2, max_count=4))
    assert r.status_code == 403
    assert "Requested 2-4, but already used 3 of 3 instances" in r.json()["forbidden"]["message"]

    r = member.post(f"{stack.url}/v2.1/servers",
                    json=server_body(image_id, "meta", metadata={"a": "1", "b": "2", "c": "3"}))
    assert r.status_code == 403
    assert r.json()["forbidden"]["message"] == "Maximum number of metadata items exceeds 2"

    # Cores: raise the instance limit, keep cores tight.
    admin.put(f"{stack.url}/v2.1/os-quota-sets/{proj.id}",
              json={"quota_set": {"instances": 20, "cores": 3, "ram": -1}}).raise_for_status()
    r = member.post(f"{stack.url}/v2.1/servers", json=server_body(image_id, "core", flavorRef="1"))
    assert r.status_code == 403
    assert r.json()["forbidden"]["message"] == ("Quota exceeded for cores: Requested 1, but already used 3 of 3 "
                                                "cores")
    usage = detail(admin, stack, proj.id)
    assert usage["instances"] == {"in_use": 3, "limit": 20, "reserved": 0}
    assert usage["metadata_items"]["limit"] == 2
    delete_all(admin, stack, proj.id)


def concurrent_creates(stack, proj, image_id: str, prefix: str, count: int, threads: int) -> list[tuple[int, dict]]:
    """``count`` server creates by the project's member from ``threads`` threads: (status, body) of each."""
    token = proj.session("member").headers["X-Auth-Token"]

    def create(i: int) -> tuple[int, dict]:
        r = requests.post(f"{stack.url}/v2.1/servers", json=server_body(image_id, f"{prefix}-{i}"),
                          headers={"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.96"}, timeout=300)
        return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(create, range(count)))


@pytest.mark.slow
def test_concurrent_creates_stop_exactly_at_the_quota(world):
    stack, admin, image_id = world
    proj = Project(stack, admin)
    admin.put(f"{stack.url}/v2.1/os-quota-sets/{proj.id}",
              json={"quota_set": {"instances": 50, "cores": -1, "ram": -1}}).raise_for_status()
    results = concurrent_creates(stack, proj, image_id, "race", 200, 50)
    codes = [code for code, _ in results]
    assert codes.count(202) == 50 and codes.count(403) == 150, sorted(set(codes))
    message = "Quota exceeded for instances: Requested 1, but already used 50 of 50 instances"
    assert all(body == {"forbidden": {"code": 403, "message": message}} for code, body in results if code == 403)

    created = {body["server"]["id"] for code, body in results if code == 202}
    assert set(live_servers(admin, stack, proj.id)) == created
    usage = detail(admin, stack, proj.id)
    assert usage["instances"]["in_use"] == len(created) == 50
    assert usage["cores"]["in_use"] == 50 and usage["ram"]["in_use"] == 50 * 128
    delete_all(admin, stack, proj.id)


@pytest.mark.backends("sqlite-filesystem")
def test_per_user_instances_quota(world):
    """A user's own instances quota (2) within the project's (10): exact under concurrent creates, and the other
    users of the project still boot."""
    stack, admin, image_id = world
    proj = Project(stack, admin)
    url, uid = f"{stack.url}/v2.1/os-quota-sets/{proj.id}", proj.user_ids["member"]
    r = admin.put(url, params={"user_id": uid}, json={"quota_set": {"instances": 2}})
    assert r.status_code == 200 and r.json()["quota_set"]["instances"] == 2, r.text
    results = concurrent_creates(stack, proj, image_id, "mine", 10, 10)
    assert sorted(code for code, _ in results) == [202] * 2 + [403] * 8
    over = {"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 2 "
                                                  "of 2 instances"}}
    assert all(body == over for code, body in results if code == 403)
    assert concurrent_creates(stack, proj, image_id, "third", 1, 1) == [(403, over)]  # once the others are done
    r = proj.session("member2").post(f"{stack.url}/v2.1/servers", json=server_body(image_id, "theirs"))
    assert r.status_code == 202, r.text

    mine = admin.get(f"{url}/detail", params={"user_id": uid}).json()["quota_set"]["instances"]
    assert mine == {"in_use": 2, "limit": 2, "reserved": 0}
    assert detail(admin, stack, proj.id)["instances"] == {"in_use": 3, "limit": 10, "reserved": 0}
    r = admin.put(url, json={"quota_set": {"instances": 1}})
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"] == ("Quota limit 1 for instances must be greater than or equal to "
                                                 "already used and reserved 3.")
    delete_all(admin, stack, proj.id)
    assert admin.get(f"{url}/detail", params={"user_id": uid}).json()["quota_set"]["instances"]["in_use"] == 0
