"""Server metadata, tags and the further server actions (rescue, rebuild, createImage, crash dump, diagnostics,
soft delete) through the openstack CLI, openstacksdk and raw requests, with Nova's error codes and messages."""
from __future__ import annotations

import json
import time
import uuid

import openstack
import pytest
import requests

from tests.functional.test_housekeeping import run_task
from harness.stack import BACKENDS, Stack

pytestmark = [pytest.mark.services, pytest.mark.backends("sqlite-filesystem", "mariadb-rabbitmq")]
MEMBER_PW, READER_PW, OTHER_PW = "alice-pw", "rita-pw", "bob-pw"


class Api:
    """Raw Compute API calls as one user (to check exact status codes and bodies)."""

    def __init__(self, stack: Stack, token: str, version: str = "2.96"):
        self.base = f"{stack.url}/v2.1"
        self.s = requests.Session()
        self.s.headers.update({"X-Auth-Token": token, "OpenStack-API-Version": f"compute {version}"})

    def __call__(self, method: str, path: str, json: object = None, version: str | None = None):
        headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
        return self.s.request(method, f"{self.base}{path}", json=json, headers=headers, timeout=60)

    def server(self, sid: str) -> dict:
        return self("GET", f"/servers/{sid}").json()["server"]

    def wait(self, sid: str, status: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            server = self.server(sid)
            if (server["status"] == status and server["OS-EXT-STS:task_state"] is None) \
                    or time.monotonic() > deadline:
                assert server["status"] == status and server["OS-EXT-STS:task_state"] is None, server
                return server
            time.sleep(0.2)


def fault(resp, code: int) -> str:
    assert resp.status_code == code, resp.text
    name = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}[code]
    return resp.json()[name]["message"]


def make_users(stack: Stack) -> None:
    """demo: alice (member) and rita (reader); other: bob (member)."""
    for project, user, pw, role in (("demo", "alice", MEMBER_PW, "member"), ("demo", "rita", READER_PW, "reader"),
                                    ("other", "bob", OTHER_PW, "member")):
        if stack.openstack("project", "show", project, check=False).returncode != 0:
            stack.openstack("project", "create", project)
        stack.openstack("user", "create", "--password", pw, "--project", project, user)
        stack.openstack("role", "add", "--project", project, "--user", user, role)


def upload_image(api_token: str, stack: Stack, name: str, data: bytes) -> str:
    hdrs = {"X-Auth-Token": api_token}
    img = requests.post(f"{stack.url}/image/v2/images", headers=hdrs, json={
        "name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public"}).json()
    requests.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=data,
                 headers={**hdrs, "Content-Type": "application/octet-stream"}).raise_for_status()
    return img["id"]


@pytest.fixture(scope="module")
def env(stack):
    make_users(stack)
    admin = stack.admin_token()
    images = {"one": upload_image(admin, stack, "act-one", b"image one " * 100),
              "two": upload_image(admin, stack, "act-two", b"image two " * 200)}
    return {"stack": stack, "images": images, "admin": Api(stack, admin),
            "alice": Api(stack, stack.token("alice", MEMBER_PW, "demo")),
            "rita": Api(stack, stack.token("rita", READER_PW, "demo")),
            "bob": Api(stack, stack.token("bob", OTHER_PW, "other"))}


def boot(api: Api, image_id: str, name: str, **extra) -> str:
    r = api("POST", "/servers", {"server": {"name": name, "imageRef": image_id, "flavorRef": "42",
                                            "networks": "none", **extra}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    api.wait(sid, "ACTIVE")
    return sid


def sdk(stack: Stack, user: str, password: str, project: str, version: str = "2.26"):
    return openstack.connect(auth_url=f"{stack.url}/identity/v3", username=user, password=password,
                             project_name=project, user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne", compute_api_version=version)


def test_metadata_and_tags(env):
    stack, alice, rita, bob = env["stack"], env["alice"], env["rita"], env["bob"]
    os_alice = dict(user="alice", password=MEMBER_PW, project="demo")
    # metadata given at create is in the server body; more than the quota is Nova's 403
    r = alice("POST", "/servers", {"server": {"name": "too-much", "imageRef": env["images"]["one"],
                                              "flavorRef": "42", "networks": "none",
                                              "metadata": {f"k{i}": "v" for i in range(129)}}})
    assert fault(r, 403) == "Maximum number of metadata items exceeds 128"
    sid = boot(alice, env["images"]["one"], "meta-vm", metadata={"owner": "alice"}, tags=["boot-tag"])
    assert alice.server(sid)["metadata"] == {"owner": "alice"}
    assert alice.server(sid)["tags"] == ["boot-tag"]

    # CLI: server set/unset --property
    stack.openstack("server", "set", "--property", "color=blue", "--property", "size=xl", sid, **os_alice)
    shown = stack.openstack_json("server", "show", sid, **os_alice)
    assert shown["properties"] == {"owner": "alice", "color": "blue", "size": "xl"}
    stack.openstack("server", "unset", "--property", "size", sid, **os_alice)
    assert alice("GET", f"/servers/{sid}/metadata").json() == {"metadata": {"owner": "alice", "color": "blue"}}

    # the REST shapes: show key, PUT key, PUT all, DELETE key
    assert alice("GET", f"/servers/{sid}/metadata/color").json() == {"meta": {"color": "blue"}}
    assert fault(alice("GET", f"/servers/{sid}/metadata/nope"), 404) == "Metadata item was not found"
    r = alice("PUT", f"/servers/{sid}/metadata/color", {"meta": {"color": "red"}})
    assert r.status_code == 200 and r.json() == {"meta": {"color": "red"}}
    assert fault(alice("PUT", f"/servers/{sid}/metadata/color", {"meta": {"shape": "x"}}), 400) == \
        "Request body and URI mismatch"
    # Nova's schema (maxProperties 1) refuses it before the view's own "too many items" check could
    assert fault(alice("PUT", f"/servers/{sid}/metadata/color", {"meta": {"color": "x", "b": "y"}}), 400) \
        .startswith("Invalid input for field/attribute meta.")
    r = alice("PUT", f"/servers/{sid}/metadata", {"metadata": {"only": "this"}})
    assert r.status_code == 200 and r.json() == {"metadata": {"only": "this"}}
    assert alice("DELETE", f"/servers/{sid}/metadata/only").status_code == 204
    assert fault(alice("DELETE", f"/servers/{sid}/metadata/only"), 404) == "Metadata item was not found"
    # bad bodies: key or value longer than 255, non-string value, too many items
    assert "too long" in fault(alice("POST", f"/servers/{sid}/metadata", {"metadata": {"k": "v" * 256}}), 400)
    assert "'" + "k" * 256 + "' was unexpected" in fault(
        alice("POST", f"/servers/{sid}/metadata", {"metadata": {"k" * 256: "v"}}), 400)
    assert "is not of type 'string'" in fault(alice("POST", f"/servers/{sid}/metadata", {"metadata": {"k": 1}}),
                                              400)
    assert fault(alice("PUT", f"/servers/{sid}/metadata", {"metadata": {f"k{i}": "v" for i in range(129)}}),
                 403) == "Maximum number of metadata items exceeds 128"
    assert alice("GET", f"/servers/{sid}/metadata").json() == {"metadata": {}}
    # openstacksdk
    conn = sdk(stack, **os_alice)
    conn.compute.set_server_metadata(sid, via="sdk")
    assert conn.compute.fetch_server_metadata(sid).metadata == {"via": "sdk"}

    # reader reads but may not write; another project sees nothing
    assert rita("GET", f"/servers/{sid}/metadata").status_code == 200
    fault(rita("POST", f"/servers/{sid}/metadata", {"metadata": {"a": "b"}}), 403)
    fault(rita("PUT", f"/servers/{sid}/tags/x"), 403)
    assert fault(bob("GET", f"/servers/{sid}/metadata"), 404) == f"Instance {sid} could not be found."
    fault(bob("PUT", f"/servers/{sid}/tags/x"), 404)

    # tags through the CLI (2.26) and the list filters
    stack.openstack("--os-compute-api-version", "2.26", "server", "set", "--tag", "red", "--tag", "green", sid,
                    **os_alice)
    other = boot(alice, env["images"]["one"], "tag-vm-2", tags=["red"])
    shown = stack.openstack_json("--os-compute-api-version", "2.26", "server", "show", sid, **os_alice)
    assert sorted(shown["tags"]) == ["boot-tag", "green", "red"]

    def names(**query) -> set[str]:
        return {s["id"] for s in alice("GET", "/servers?" + "&".join(f"{k}={v}" for k, v in query.items()))
                .json()["servers"]}
    assert names(tags="red,green") == {sid}
    assert names(**{"tags-any": "green,red"}) == {sid, other}
    assert names(**{"not-tags": "red,green"}) == {other}
    assert names(**{"not-tags-any": "green"}) == {other}
    listed = stack.openstack_json("--os-compute-api-version", "2.26", "server", "list", "--tags", "green",
                                  **os_alice)
    assert [s["ID"] for s in listed] == [sid]
    stack.openstack("--os-compute-api-version", "2.26", "server", "unset", "--tag", "green", sid, **os_alice)
    assert alice("GET", f"/servers/{sid}/tags").json() == {"tags": ["boot-tag", "red"]}

    # the tag sub-resource shapes
    assert alice("GET", f"/servers/{sid}/tags/red").status_code == 204
    assert fault(alice("GET", f"/servers/{sid}/tags/blue"), 404) == f"Instance {sid} has no tag 'blue'"
    r = alice("PUT", f"/servers/{sid}/tags/blue")
    assert r.status_code == 201 and r.headers["Location"].endswith(f"/servers/{sid}/tags/blue")
    assert alice("PUT", f"/servers/{sid}/tags/blue").status_code == 204
    r = alice("PUT", f"/servers/{sid}/tags", {"tags": ["a", "b", "a"]})
    assert r.status_code == 200 and r.json() == {"tags": ["a", "b"]}
    conn.compute.add_tag_to_server(sid, "from-sdk")
    assert alice("GET", f"/servers/{sid}/tags").json()["tags"] == ["a", "b", "from-sdk"]
    assert "does not match" in fault(alice("PUT", f"/servers/{sid}/tags", {"tags": ["a,b"]}), 400)
    assert "does not match" in fault(alice("PUT", f"/servers/{sid}/tags/a,b"), 400)
    assert "too long" in fault(alice("PUT", f"/servers/{sid}/tags", {"tags": ["x" * 61]}), 400)
    assert fault(alice("PUT", f"/servers/{sid}/tags", {"tags": [f"t{i}" for i in range(51)]}), 400) == \
        "The number of tags exceeded the per-server limit 50"
    alice("PUT", f"/servers/{sid}/tags", {"tags": [f"t{i}" for i in range(50)]})
    assert fault(alice("PUT", f"/servers/{sid}/tags/one-more"), 400) == \
        "The number of tags exceeded the per-server limit 50"
    fault(alice("GET", f"/servers/{sid}/tags", version="2.25"), 404)
    assert "tags" not in alice("GET", f"/servers/{sid}", version="2.25").json()["server"]
    assert alice("DELETE", f"/servers/{sid}/tags").status_code == 204
    assert alice("GET", f"/servers/{sid}/tags").json() == {"tags": []}

    # wrong state: metadata and tags refuse a server that is in a task or in ERROR-like states
    assert alice("POST", f"/servers/{sid}/action", {"os-stop": None}).status_code == 202
    alice.wait(sid, "SHUTOFF")
    assert alice("POST", f"/servers/{sid}/metadata", {"metadata": {"x": "y"}}).status_code == 200
    alice("POST", f"/servers/{sid}/action", {"lock": None})
    assert fault(alice("POST", f"/servers/{sid}/metadata", {"metadata": {"x": "z"}}), 409) == \
        f"Instance {sid} is locked"
    alice("POST", f"/servers/{sid}/action", {"unlock": None})
    for server in (sid, other):
        assert alice("DELETE", f"/servers/{server}").status_code == 204


def waited_json(stack: Stack, *args: str, **kw) -> dict:
    """The JSON the CLI prints after the progress line of --wait."""
    out = stack.openstack(*args, "-f", "json", **kw).stdout
    return json.loads(out[out.index("{"):])


def event_names(api: Api, sid: str) -> list[str]:
    return [a["action"] for a in api("GET", f"/servers/{sid}/os-instance-actions").json()["instanceActions"]]


def test_rescue_rebuild_image_crash_dump_diagnostics(env):
    stack, admin, alice, rita, bob = env["stack"], env["admin"], env["alice"], env["rita"], env["bob"]
    os_alice = dict(user="alice", password=MEMBER_PW, project="demo")
    sid = boot(alice, env["images"]["one"], "act-vm")

    # wrong state / wrong user first (nothing changes)
    assert fault(alice("POST", f"/servers/{sid}/action", {"unrescue": None}), 409) == \
        f"Cannot 'unrescue' instance {sid} while it is in vm_state active"
    assert fault(alice("POST", f"/servers/{sid}/action", {"restore": None}), 409) == \
        f"Cannot 'restore' instance {sid} while it is in vm_state active"
    fault(rita("POST", f"/servers/{sid}/action", {"rescue": None}), 403)
    fault(bob("POST", f"/servers/{sid}/action", {"rescue": None}), 404)
    assert "'bogus' was unexpected" in fault(alice("POST", f"/servers/{sid}/action",
                                                   {"rescue": {"bogus": 1}}), 400)
    fault(alice("POST", f"/servers/{sid}/action", {"rebuild": {"name": "no-image"}}), 400)
    fault(alice("POST", f"/servers/{sid}/action", {"rebuild": {"imageRef": str(uuid.uuid4())}}), 400)
    fault(alice("POST", f"/servers/{sid}/action", {"createImage": {}}), 400)

    # rescue / unrescue (CLI)
    stack.openstack("server", "rescue", sid, **os_alice)
    rescued = alice.wait(sid, "RESCUE")
    assert rescued["OS-EXT-STS:vm_state"] == "rescued"
    assert fault(alice("POST", f"/servers/{sid}/action", {"rebuild": {"imageRef": env["images"]["two"]}}),
                 409) == f"Cannot 'rebuild' instance {sid} while it is in vm_state rescued"
    assert fault(alice("POST", f"/servers/{sid}/action", {"createImage": {"name": "x"}}), 409) == \
        f"Cannot 'createImage' instance {sid} while it is in vm_state rescued"
    # trigger_crash_dump is allowed when rescued (2.17), refused before 2.17
    fault(alice("POST", f"/servers/{sid}/action", {"trigger_crash_dump": None}, version="2.16"), 404)
    stack.openstack("--os-compute-api-version", "2.17", "server", "dump", "create", sid, **os_alice)
    deadline = time.monotonic() + 30  # the NMI is sent asynchronously and sets no task_state (as in Nova)
    while "NMI" not in alice("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}}).json()["output"]:
        assert time.monotonic() < deadline, "the crash dump never reached the guest"
        time.sleep(0.2)
    stack.openstack("server", "unrescue", sid, **os_alice)
    alice.wait(sid, "ACTIVE")
    log = alice("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}}).json()["output"]
    assert "rescued from image" in log and "NMI" in log and "unrescued" in log

    # rebuild with a new image and name (CLI), events recorded
    rebuilt = waited_json(stack, "server", "rebuild", "--image", "act-two", "--name", "act-vm-2", "--wait", sid,
                          **os_alice)
    assert rebuilt["name"] == "act-vm-2"
    server = alice.wait(sid, "ACTIVE")
    assert server["image"]["id"] == env["images"]["two"] and server["name"] == "act-vm-2"
    r = alice("POST", f"/servers/{sid}/action", {"rebuild": {"imageRef": env["images"]["one"],
                                                             "preserve_ephemeral": True,
                                                             "metadata": {"rebuilt": "yes"}}})
    assert r.status_code == 202 and r.json()["server"]["status"] == "REBUILD" and r.json()["server"]["adminPass"]
    server = alice.wait(sid, "ACTIVE")
    assert server["image"]["id"] == env["images"]["one"] and server["metadata"] == {"rebuilt": "yes"}

    # createImage through the CLI: an active image with the server's data (the fake disk is its image)
    snap = waited_json(stack, "server", "image", "create", "--name", "act-snap", "--wait", sid, **os_alice)
    assert snap["name"] == "act-snap"
    hdrs = {"X-Auth-Token": stack.token("alice", MEMBER_PW, "demo")}
    img = requests.get(f"{stack.url}/image/v2/images/{snap['id']}", headers=hdrs).json()
    assert img["status"] == "active" and img["instance_uuid"] == sid and img["image_type"] == "snapshot"
    data = requests.get(f"{stack.url}/image/v2/images/{snap['id']}/file", headers=hdrs).content
    assert data == b"image one " * 100
    # 2.45+ answers image_id; older versions a Location header
    r = alice("POST", f"/servers/{sid}/action", {"createImage": {"name": "snap-2", "metadata": {"k": "v"}}})
    assert r.status_code == 202 and set(r.json()) == {"image_id"}
    alice.wait(sid, "ACTIVE")
    r = alice("POST", f"/servers/{sid}/action", {"createImage": {"name": "snap-3"}}, version="2.44")
    assert r.status_code == 202 and "/images/" in r.headers["Location"]
    alice.wait(sid, "ACTIVE")
    # a server booted from the snapshot works
    from_snap = boot(alice, snap["id"], "from-snap")

    # diagnostics: admin only, 2.48 standard format (CLI), legacy before
    fault(alice("GET", f"/servers/{sid}/diagnostics"), 403)
    diag = admin("GET", f"/servers/{sid}/diagnostics").json()
    assert diag["state"] == "running" and diag["driver"] == "libvirt" and diag["num_cpus"] == 1
    assert diag["memory_details"]["maximum"] > 0 and len(diag["disk_details"]) == 1
    legacy = admin("GET", f"/servers/{sid}/diagnostics", version="2.47").json()
    assert "cpu0_time" in legacy and legacy["memory"] == diag["memory_details"]["maximum"] * 1024
    shown = stack.openstack_json("server", "show", "--diagnostics", sid)
    assert shown["driver"] == "libvirt"  # Nova's enumeration; its own fake driver says libvirt too

    assert event_names(alice, sid)[:8] == ["createImage", "createImage", "createImage", "rebuild", "rebuild",
                                           "unrescue", "trigger_crash_dump", "rescue"]

    # stopped: diagnostics 409, rebuild keeps it stopped
    alice("POST", f"/servers/{sid}/action", {"os-stop": None})
    alice.wait(sid, "SHUTOFF")
    assert fault(admin("GET", f"/servers/{sid}/diagnostics"), 409) == \
        f"Cannot 'get_diagnostics' instance {sid} while it is in power state shutdown"
    assert fault(alice("POST", f"/servers/{sid}/action", {"trigger_crash_dump": None}), 409) == \
        f"Cannot 'trigger_crash_dump' instance {sid} while it is in vm_state stopped"
    alice("POST", f"/servers/{sid}/action", {"rebuild": {"imageRef": env["images"]["two"]}})
    assert alice.wait(sid, "SHUTOFF")["image"]["id"] == env["images"]["two"]
    for server in (sid, from_snap):
        assert alice("DELETE", f"/servers/{server}").status_code == 204


# Long enough that the first reclaim below runs well within it on a loaded machine (run_task starts a Python
# process that imports Celery, about 1-3 s here); a 2 s interval let that run reclaim the server already.
RECLAIM_INTERVAL = 10


@pytest.fixture(scope="module")
def soft_delete_stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("softdelete"), BACKENDS["sqlite-filesystem"], compute_hosts="fake-1",
               extra_env={"STRATUS_RECLAIM_INSTANCE_INTERVAL": str(RECLAIM_INTERVAL)})
    st.start()
    yield st
    st.stop()


def test_soft_delete_restore_force_delete_and_reclaim(soft_delete_stack):
    stack = soft_delete_stack
    make_users(stack)
    admin = Api(stack, stack.admin_token())
    alice = Api(stack, stack.token("alice", MEMBER_PW, "demo"))
    rita = Api(stack, stack.token("rita", READER_PW, "demo"))
    image = upload_image(stack.admin_token(), stack, "sd", b"sd" * 64)
    os_alice = dict(user="alice", password=MEMBER_PW, project="demo")
    keep, force, reclaimed = (boot(alice, image, n) for n in ("keep", "force", "reclaimed"))

    def usage() -> dict:
        return admin("GET", "/os-hypervisors/detail", version="2.87").json()["hypervisors"][0]

    assert usage()["running_vms"] == 3
    # DELETE soft-deletes: restorable, still holding its resources
    stack.openstack("server", "delete", keep, **os_alice)
    assert alice.wait(keep, "SOFT_DELETED")["OS-EXT-STS:power_state"] == 4
    fault(rita("POST", f"/servers/{keep}/action", {"restore": None}), 403)
    stack.openstack("server", "restore", keep, **os_alice)
    assert alice.wait(keep, "ACTIVE")["OS-EXT-STS:power_state"] == 1
    assert [a for a in event_names(alice, keep)][:2] == ["restore", "delete"]

    # forceDelete deletes at once
    stack.openstack("server", "delete", force, **os_alice)
    alice.wait(force, "SOFT_DELETED")
    assert alice("POST", f"/servers/{force}/action", {"forceDelete": None}).status_code == 202
    deadline = time.monotonic() + 30
    while alice("GET", f"/servers/{force}").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alice("GET", f"/servers/{force}").status_code == 404

    # the periodic task reclaims what stayed soft-deleted longer than the interval, releasing its claim
    deleted = time.monotonic()
    assert alice("DELETE", f"/servers/{reclaimed}").status_code == 204
    alice.wait(reclaimed, "SOFT_DELETED")
    assert run_task(stack, "stratus.conductor.reclaim_soft_deleted") == "0"  # not old enough yet
    assert time.monotonic() - deleted < RECLAIM_INTERVAL, "the check above ran too late to mean anything"
    time.sleep(max(0.0, deleted + RECLAIM_INTERVAL + 0.5 - time.monotonic()))
    assert run_task(stack, "stratus.conductor.reclaim_soft_deleted") == "1"
    deadline = time.monotonic() + 30
    while alice("GET", f"/servers/{reclaimed}").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alice("GET", f"/servers/{reclaimed}").status_code == 404
    assert usage()["running_vms"] == 1
    assert alice("GET", "/limits").json()["limits"]["absolute"]["totalInstancesUsed"] == 1
    assert quota_usage(stack, alice.server(keep)["tenant_id"]) == 1


def quota_usage(stack: Stack, project_id: str) -> int:
    from sqlalchemy import create_engine, text
    engine = create_engine(f"sqlite:///{stack.state_dir / 'stratus.sqlite'}")
    try:
        with engine.connect() as c:
            return c.execute(text("SELECT instances FROM quota_usages WHERE project_id = :p"),
                             {"p": project_id}).scalar()
    finally:
        engine.dispose()


def host_of(admin: Api, sid: str) -> str:
    return admin.server(sid)["OS-EXT-SRV-ATTR:host"]


def hypervisor_usage(admin: Api) -> dict[str, dict]:
    return {h["hypervisor_hostname"]: h for h in
            admin("GET", "/os-hypervisors/detail", version="2.87").json()["hypervisors"]}


def test_resize_migrate_shelve_live_migrate_evacuate(env):
    stack, admin, alice, rita, bob = env["stack"], env["admin"], env["alice"], env["rita"], env["bob"]
    os_alice = dict(user="alice", password=MEMBER_PW, project="demo")
    sid = boot(alice, env["images"]["one"], "move-vm")
    before = hypervisor_usage(admin)

    # bad requests, wrong users, wrong states
    assert fault(alice("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "42"}}), 400) == \
        "When resizing, instances must change flavor!"
    fault(alice("POST", f"/servers/{sid}/action", {"resize": {}}), 400)
    fault(alice("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "no-such"}}), 400)
    fault(rita("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "84"}}), 403)
    fault(bob("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "84"}}), 404)
    fault(alice("POST", f"/servers/{sid}/action", {"migrate": None}), 403)
    assert fault(alice("POST", f"/servers/{sid}/action", {"confirmResize": None}), 409) == \
        f"Cannot 'confirmResize' instance {sid} while it is in vm_state active"
    assert fault(alice("POST", f"/servers/{sid}/action", {"unshelve": None}), 409) == \
        f"Cannot 'unshelve' instance {sid} while it is in vm_state active"

    # resize (CLI) to VERIFY_RESIZE on the other host, then confirm: the source's claim is released
    source = host_of(admin, sid)
    stack.openstack("server", "resize", "--flavor", "m1.micro", sid, **os_alice)
    resized = alice.wait(sid, "VERIFY_RESIZE")
    assert resized["flavor"]["original_name"] == "m1.micro"
    dest = host_of(admin, sid)
    assert dest != source
    usage = hypervisor_usage(admin)
    assert usage[source]["memory_mb_used"] == before[source]["memory_mb_used"]  # still held until confirm
    assert usage[dest]["memory_mb_used"] == before[dest]["memory_mb_used"] + 192
    assert fault(alice("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "1"}}), 409) == \
        f"Cannot 'resize' instance {sid} while it is in vm_state resized"
    stack.openstack("server", "resize", "confirm", sid, **os_alice)
    alice.wait(sid, "ACTIVE")
    usage = hypervisor_usage(admin)
    assert usage[source]["memory_mb_used"] == before[source]["memory_mb_used"] - 128

    # resize back and revert: flavor, host and claims are as before the resize
    alice("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "1"}})
    alice.wait(sid, "VERIFY_RESIZE")
    assert alice.server(sid)["flavor"]["original_name"] == "m1.tiny"
    stack.openstack("server", "resize", "revert", sid, **os_alice)
    reverted = alice.wait(sid, "ACTIVE")
    assert reverted["flavor"]["original_name"] == "m1.micro" and host_of(admin, sid) == dest
    assert hypervisor_usage(admin)[dest]["memory_mb_used"] == before[dest]["memory_mb_used"] + 192
    assert event_names(alice, sid)[:4] == ["revertResize", "resize", "confirmResize", "resize"]

    # cold migration (admin, CLI) and its confirmation
    stack.openstack("server", "migrate", sid)
    alice.wait(sid, "VERIFY_RESIZE")
    assert host_of(admin, sid) == source
    stack.openstack("server", "resize", "confirm", sid)
    alice.wait(sid, "ACTIVE")

    # live migration (admin) to a named host
    r = admin("POST", f"/servers/{sid}/action", {"os-migrateLive": {"host": dest, "block_migration": "auto"}})
    assert r.status_code == 202, r.text
    alice.wait(sid, "ACTIVE")
    assert host_of(admin, sid) == dest
    assert fault(admin("POST", f"/servers/{sid}/action", {"os-migrateLive": {"host": dest,
                                                                              "block_migration": "auto"}},
                       version="2.33"), 400) == "The target host can't be the same one."  # 2.34+: async
    log = alice("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}}).json()["output"]
    assert f"live-migrated from {source} to {dest}" in log

    # shelve (offloaded at once: no host, no claim), unshelve (scheduled again)
    stack.openstack("server", "shelve", sid, **os_alice)
    shelved = alice.wait(sid, "SHELVED_OFFLOADED")
    assert shelved["OS-EXT-STS:vm_state"] == "shelved_offloaded" and host_of(admin, sid) is None
    assert sum(h["running_vms"] for h in hypervisor_usage(admin).values()) == \
        sum(h["running_vms"] for h in before.values()) - 1
    assert fault(alice("POST", f"/servers/{sid}/action", {"os-stop": None}), 409) == \
        f"Cannot 'stop' instance {sid} while it is in vm_state shelved_offloaded"
    assert fault(alice("POST", f"/servers/{sid}/action", {"unshelve": {"availability_zone": "nowhere"}},
                       version="2.77"), 400).startswith("No valid host was found.")
    assert alice.server(sid)["status"] == "SHELVED_OFFLOADED"
    stack.openstack("--os-compute-api-version", "2.77", "server", "unshelve", "--availability-zone", "nova", sid,
                    **os_alice)
    alice.wait(sid, "ACTIVE")
    assert host_of(admin, sid) in (source, dest)

    # evacuate: refused while the host is up; allowed once its service is forced down
    host = host_of(admin, sid)
    other = source if host == dest else dest
    assert fault(admin("POST", f"/servers/{sid}/action", {"evacuate": {}}), 400) == \
        f"Compute service of {host} is still in use."
    stack.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--down", host,
                    "nova-compute")
    try:
        fault(admin("POST", f"/servers/{sid}/action", {"evacuate": {}}, version="2.13"), 400)
        r = admin("POST", f"/servers/{sid}/action", {"evacuate": {"onSharedStorage": False,
                                                                  "adminPass": "Evac-pass-1"}}, version="2.13")
        assert r.status_code == 200 and r.json() == {"adminPass": "Evac-pass-1"}, r.text
        alice.wait(sid, "ACTIVE")
        assert host_of(admin, sid) == other
    finally:
        stack.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--up", host,
                        "nova-compute")
    assert event_names(alice, sid)[:5] == ["evacuate", "unshelve", "shelve", "live-migration", "confirmResize"]

    # deleting a server that awaits its resize confirmation frees both hosts
    alice("POST", f"/servers/{sid}/action", {"resize": {"flavorRef": "1"}})
    alice.wait(sid, "VERIFY_RESIZE")
    assert alice("DELETE", f"/servers/{sid}").status_code == 204
    deadline = time.monotonic() + 30
    while alice("GET", f"/servers/{sid}").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = hypervisor_usage(admin)
    assert sum(h["memory_mb_used"] for h in after.values()) == sum(h["memory_mb_used"] for h in before.values()) - 128
    assert sum(h["running_vms"] for h in after.values()) == sum(h["running_vms"] for h in before.values()) - 1


def test_shelve_snapshots_and_unshelve_boots_from_the_snapshot(env):
    """Nova's shelve: an image ``<name>-shelved`` holds the disk while the server is offloaded; unshelve boots from
    it (the server's own image may be gone by then) and deletes it; deleting a shelved server deletes it too."""
    stack, admin, alice = env["stack"], env["admin"], env["alice"]
    token = stack.admin_token()
    data = b"shelf disk " * 300
    own_image = upload_image(token, stack, "shelf-base", data)
    images = requests.Session()
    images.headers["X-Auth-Token"] = token

    def shelved_image(name: str) -> dict | None:
        found = images.get(f"{stack.url}/image/v2/images", params={"name": f"{name}-shelved"}).json()["images"]
        return found[0] if found else None

    sid = boot(alice, own_image, "shelf-vm")
    assert alice("POST", f"/servers/{sid}/action", {"shelve": None}).status_code == 202
    alice.wait(sid, "SHELVED_OFFLOADED")
    snap = shelved_image("shelf-vm")
    assert snap is not None and snap["status"] == "active" and snap["size"] == len(data)
    assert snap["owner"] == admin("GET", f"/servers/{sid}").json()["server"]["tenant_id"]
    assert snap["image_type"] == "snapshot" and snap["instance_uuid"] == sid
    assert images.get(f"{stack.url}/image/v2/images/{snap['id']}/file").content == data
    assert fault(alice("POST", f"/servers/{sid}/action", {"shelve": None}), 409) == \
        f"Cannot 'shelve' instance {sid} while it is in vm_state shelved_offloaded"

    # the server's own image is deleted: only the snapshot can bring the disk back
    assert images.delete(f"{stack.url}/image/v2/images/{own_image}").status_code == 204
    assert alice("POST", f"/servers/{sid}/action", {"unshelve": None}).status_code == 202
    alice.wait(sid, "ACTIVE")
    assert images.get(f"{stack.url}/image/v2/images/{snap['id']}").status_code == 404
    assert shelved_image("shelf-vm") is None

    # shelve again (the guest's disk outlived both images), then delete the shelved server: no image is left
    assert alice("POST", f"/servers/{sid}/action", {"shelve": None}).status_code == 202
    alice.wait(sid, "SHELVED_OFFLOADED")
    again = shelved_image("shelf-vm")
    assert again is not None and again["status"] == "active" and again["size"] == len(data)
    assert alice("DELETE", f"/servers/{sid}").status_code == 204
    deadline = time.monotonic() + 30
    while alice("GET", f"/servers/{sid}").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert images.get(f"{stack.url}/image/v2/images/{again['id']}").status_code == 404


def test_create_backup_rotation_and_reset_state(env):
    """createBackup snapshots through the compute host and keeps the newest ``rotation`` backups of its type;
    os-resetState (admin) puts a server in error and back, recording the action (issue 28 item 10)."""
    stack, admin, alice = env["stack"], env["admin"], env["alice"]
    images = requests.Session()
    images.headers["X-Auth-Token"] = stack.admin_token()
    data = b"image one " * 100
    sid = boot(alice, env["images"]["one"], "backed-up")

    def backups() -> list[str]:
        found = images.get(f"{stack.url}/image/v2/images", params={"sort": "created_at:asc"}).json()["images"]
        return [i["name"] for i in found if i.get("instance_uuid") == sid and i.get("backup_type") == "daily"]

    ids = []
    for n in range(3):
        r = alice("POST", f"/servers/{sid}/action",
                  {"createBackup": {"name": f"daily-{n}", "backup_type": "daily", "rotation": 2}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["image_id"])
        alice.wait(sid, "ACTIVE")
        time.sleep(1.1)  # backups are ordered by created_at, whole seconds on MariaDB (as Glance's on MySQL)
    assert backups() == ["daily-1", "daily-2"]
    newest = images.get(f"{stack.url}/image/v2/images/{ids[-1]}").json()
    assert newest["status"] == "active" and newest["image_type"] == "backup" and newest["size"] == len(data)
    assert images.get(f"{stack.url}/image/v2/images/{ids[-1]}/file").content == data
    assert images.get(f"{stack.url}/image/v2/images/{ids[0]}").status_code == 404
    # the old image proxy shows the backup as Nova did
    proxied = alice("GET", f"/images/{ids[-1]}", version="2.35").json()["image"]
    assert proxied["status"] == "ACTIVE" and proxied["server"]["id"] == sid

    assert fault(alice("POST", f"/servers/{sid}/action", {"os-resetState": {"state": "error"}}), 403)
    assert admin("POST", f"/servers/{sid}/action", {"os-resetState": {"state": "error"}}).status_code == 202
    assert admin.server(sid)["status"] == "ERROR"
    assert admin("POST", f"/servers/{sid}/action", {"os-resetState": {"state": "active"}}).status_code == 202
    assert admin.wait(sid, "ACTIVE")["status"] == "ACTIVE"
    actions = [a["action"] for a in admin("GET", f"/servers/{sid}/os-instance-actions").json()["instanceActions"]]
    assert actions.count("resetState") == 2 and actions.count("createBackup") == 3
    assert alice("DELETE", f"/servers/{sid}").status_code == 204
