"""APIs clients still call that Stratus lacked (issue 28 item 10): os-resetState, createBackup with rotation, and
os-server-password, with Nova's bodies, policies, microversion rules and errors."""
from __future__ import annotations


import pytest

from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)


def _v(version: str) -> dict:
    return {"OpenStack-API-Version": f"compute {version}"}


def _instance(uuid: str):
    from core.db import read_session
    from core.models import Instance
    with read_session() as s:
        return s.query(Instance).filter(Instance.uuid == uuid).one()


def _on_host(world: World, vm_state: str = "active", task_state: str | None = None) -> None:
    from core.db import write_session
    from core.models import Instance
    with write_session() as s:
        inst = s.query(Instance).filter(Instance.uuid == world.server_id).one()
        inst.vm_state, inst.task_state, inst.host, inst.node = vm_state, task_state, "h1", "h1"


def _actions(client, world: World) -> list[dict]:
    r = client.get(f"/v2.1/servers/{world.server_id}/os-instance-actions", headers={**world.admin.headers, **COMPUTE})
    return r.get_json()["instanceActions"]


# --- os-resetState ------------------------------------------------------------------------------------------------

def test_reset_state_is_admin_only_and_sets_the_state(client, world: World):
    _on_host(world, "active", "image_snapshot")
    url = f"/v2.1/servers/{world.server_id}/action"
    member = client.post(url, json={"os-resetState": {"state": "error"}}, headers={**world.a.headers, **COMPUTE})
    assert member.status_code == 403 and "forbidden" in member.get_json()
    for bad in ({"state": "stopped"}, {}, {"state": "error", "extra": 1}, None):
        r = client.post(url, json={"os-resetState": bad}, headers={**world.admin.headers, **COMPUTE})
        assert r.status_code == 400 and "badRequest" in r.get_json(), bad
    r = client.post(url, json={"os-resetState": {"state": "error"}}, headers={**world.admin.headers, **_v("2.1")})
    assert r.status_code == 202 and not r.data
    inst = _instance(world.server_id)
    assert (inst.vm_state, inst.task_state) == ("error", None)
    server = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.admin.headers, **COMPUTE})
    assert server.get_json()["server"]["status"] == "ERROR"
    r = client.post(url, json={"os-resetState": {"state": "active"}}, headers={**world.admin.headers, **COMPUTE})
    assert r.status_code == 202
    assert _instance(world.server_id).vm_state == "active"
    resets = [a for a in _actions(client, world) if a["action"] == "resetState"]
    assert len(resets) == 2
    missing = client.post("/v2.1/servers/00000000-0000-0000-0000-000000000000/action",
                          json={"os-resetState": {"state": "active"}}, headers={**world.admin.headers, **COMPUTE})
    assert missing.status_code == 404 and "itemNotFound" in missing.get_json()


# --- os-server-password --------------------------------------------------------------------------------------------

def test_server_password_shows_what_the_guest_posted_and_delete_clears_it(client, world: World):
    from tasks.messaging import rpc
    url = f"/v2.1/servers/{world.server_id}/os-server-password"
    member, reader = {**world.a.headers, **COMPUTE}, {**world.reader.headers, **COMPUTE}
    assert client.get(url, headers=member).get_json() == {"password": ""}
    rpc.call("stratus.conductor.set_metadata_password", world.server_id, "ZW5jcnlwdGVk")  # the metadata POST
    assert client.get(url, headers=reader).get_json() == {"password": "ZW5jcnlwdGVk"}
    assert client.get(url, headers={**world.b.headers, **COMPUTE}).status_code == 404  # another project's server
    assert client.delete(url, headers=reader).status_code == 403  # clearing needs a member
    r = client.delete(url, headers=member)
    assert r.status_code == 204 and not r.data
    assert client.get(url, headers=member).get_json() == {"password": ""}
    rpc.call("stratus.conductor.set_metadata_password", world.server_id, "bmV3")  # the guest may post again
    assert client.get(url, headers=member).get_json() == {"password": "bmV3"}


# --- createBackup -------------------------------------------------------------------------------------------------

@pytest.fixture
def canvases(monkeypatch) -> list[dict]:
    """The compute canvases instance_op starts (their first context), instead of sending them."""
    from tasks.conductor import actions
    started: list[dict] = []

    class Captured:
        def __init__(self, steps, ctx: dict):
            started.append(ctx)

        def apply_async(self) -> None:
            pass
    monkeypatch.setattr(actions, "Chain", Captured)
    return started


def _backup(client, world: World, name: str, rotation, version: str = "2.96", backup_type: str = "daily"):
    return client.post(f"/v2.1/servers/{world.server_id}/action",
                       json={"createBackup": {"name": name, "backup_type": backup_type, "rotation": rotation}},
                       headers={**world.a.headers, **_v(version)})


def _stored(ctx: dict) -> None:
    """The compute step stored the snapshot; the conductor finishes the action (and rotates)."""
    from tasks.conductor.actions import finish_instance_op
    from tests.unit.test_shelve_snapshot import upload
    finish_instance_op({**ctx, "ops": [], "power_state": 1, **upload(ctx["image_id"], b"disk")})


def _backups(world: World, backup_type: str = "daily") -> list[str]:
    from core.db import read_session
    from core.models import Image
    with read_session() as s:
        return [i.name for i in s.query(Image).order_by(Image.created_at) if
                (i.properties or {}).get("backup_type") == backup_type]


def test_create_backup_snapshots_then_keeps_the_newest_rotation(client, world: World, canvases):
    _on_host(world)
    for bad in ({"name": "b", "backup_type": "daily"}, {"name": "b", "backup_type": "daily", "rotation": -1},
                {"name": "b", "backup_type": "daily", "rotation": "x"}, {"backup_type": "daily", "rotation": 1},
                {"name": "b", "backup_type": "daily", "rotation": 1, "bogus": 1}):
        r = client.post(f"/v2.1/servers/{world.server_id}/action", json={"createBackup": bad},
                        headers={**world.a.headers, **COMPUTE})
        assert r.status_code == 400 and "badRequest" in r.get_json(), bad
    # before 2.45: 202, no body, the Location of the image under the compute API's image proxy
    r = _backup(client, world, "b1", 2, version="2.44")
    assert r.status_code == 202 and not r.data
    (ctx,) = canvases
    assert r.headers["Location"].endswith(f"/v2.1/images/{ctx['image_id']}")
    assert ctx["action"] == "backup" and _instance(world.server_id).task_state == "image_backup"
    assert _backup(client, world, "too-soon", 2).status_code == 409  # one image task at a time
    _stored(ctx)
    assert _instance(world.server_id).task_state is None
    # from 2.45: {"image_id"} and no Location; rotation "2" as a string is Nova's integer
    for name in ("b2", "b3"):
        r = _backup(client, world, name, "2")
        assert r.status_code == 202 and "Location" not in r.headers
        assert r.get_json() == {"image_id": canvases[-1]["image_id"]}
        _stored(canvases[-1])
    assert _backups(world) == ["b2", "b3"]  # b1, the oldest beyond rotation 2, was deleted
    r = _backup(client, world, "w1", 1, backup_type="weekly")
    _stored(canvases[-1])
    assert _backups(world) == ["b2", "b3"] and _backups(world, "weekly") == ["w1"]  # per backup type
    actions = [a["action"] for a in _actions(client, world)]
    assert actions.count("createBackup") == 4
    # rotation 0 before 2.45: no Location (Nova), and every backup of the type goes once stored
    r = _backup(client, world, "b4", 0, version="2.1")
    assert r.status_code == 202 and "Location" not in r.headers
    _stored(canvases[-1])
    assert _backups(world) == []
    # a reader may not back up; another project's server is not found
    assert client.post(f"/v2.1/servers/{world.server_id}/action",
                       json={"createBackup": {"name": "x", "backup_type": "d", "rotation": 1}},
                       headers={**world.reader.headers, **COMPUTE}).status_code == 403
    assert client.post(f"/v2.1/servers/{world.server_id}/action",
                       json={"createBackup": {"name": "x", "backup_type": "d", "rotation": 1}},
                       headers={**world.b.headers, **COMPUTE}).status_code == 404


# --- os-instance_usage_audit_log ------------------------------------------------------------------------------------

def test_instance_usage_audit_log_reports_the_last_completed_month_per_compute_host(client, world: World):
    import datetime as dt
    from app.compute.usage_audit_log import last_completed_month
    from core.db import write_session
    from core.models import Service
    with write_session() as s:
        s.add_all([Service(host="c1", binary="nova-compute", topic="compute"),
                   Service(host="c2", binary="nova-compute", topic="compute", disabled=True),
                   Service(host="ctl", binary="stratus-conductor", topic="conductor")])
    admin = {**world.admin.headers, **COMPUTE}
    assert client.get("/v2.1/os-instance_usage_audit_log", headers={**world.a.headers, **COMPUTE}).status_code == 403
    log = client.get("/v2.1/os-instance_usage_audit_log", headers=admin).get_json()["instance_usage_audit_logs"]
    begin, end = last_completed_month()
    assert (log["period_beginning"], log["period_ending"]) == (str(begin), str(end))
    assert sorted(log["hosts_not_run"]) == ["c1", "c2"] and log["num_hosts"] == 2 and log["num_hosts_not_run"] == 2
    assert log["overall_status"] == "0 of 2 hosts done. 0 errors." and log["log"] == {}
    shown = client.get("/v2.1/os-instance_usage_audit_log/2024-03-15 10:00:00", headers=admin).get_json()
    assert shown["instance_usage_audit_log"]["period_beginning"] == "2024-02-01 00:00:00"
    assert shown["instance_usage_audit_log"]["period_ending"] == "2024-03-01 00:00:00"
    frac = client.get("/v2.1/os-instance_usage_audit_log/2024-01-01 00:00:00.5", headers=admin).get_json()
    assert frac["instance_usage_audit_log"]["period_ending"] == "2024-01-01 00:00:00"
    # Nova's edge: exactly the first of a month is not after that month's start
    assert last_completed_month(dt.datetime(2024, 1, 1)) == (dt.datetime(2023, 11, 1), dt.datetime(2023, 12, 1))
    bad = client.get("/v2.1/os-instance_usage_audit_log/yesterday", headers=admin)
    assert bad.status_code == 400 and bad.get_json()["badRequest"]["message"] == \
        "Invalid timestamp for date yesterday"


# --- os-hosts (until 2.42) ----------------------------------------------------------------------------------------

def test_os_hosts_until_2_42(client, world: World):
    from core.db import write_session
    from core.models import ComputeNode, Instance, Service
    with write_session() as s:
        compute = Service(host="h1", binary="nova-compute", topic="compute")
        s.add_all([compute, Service(host="ctl", binary="stratus-conductor", topic="conductor")])
        s.flush()
        s.add(ComputeNode(service_id=compute.id, host="h1", hypervisor_hostname="h1", hypervisor_type="fake",
                          vcpus=8, memory_mb=8192, local_gb=80, vcpus_used=1, memory_mb_used=64, local_gb_used=1))
        inst = s.query(Instance).filter(Instance.uuid == world.server_id).one()
        inst.host, inst.node, inst.vm_state = "h1", "h1", "active"
    admin, old = world.admin.headers, _v("2.42")
    assert client.get("/v2.1/os-hosts", headers={**admin, **_v("2.43")}).status_code == 404
    assert client.get("/v2.1/os-hosts", headers={**world.a.headers, **old}).status_code == 403
    hosts = client.get("/v2.1/os-hosts", headers={**admin, **old}).get_json()["hosts"]
    assert {"host_name": "h1", "service": "compute", "zone": "nova"} in hosts
    assert {"host_name": "ctl", "service": "conductor", "zone": "internal"} in hosts
    assert client.get("/v2.1/os-hosts?zone=internal", headers={**admin, **old}).get_json()["hosts"] == \
        [{"host_name": "ctl", "service": "conductor", "zone": "internal"}]
    detail = client.get("/v2.1/os-hosts/h1", headers={**admin, **old}).get_json()["host"]
    by_project = {r["resource"]["project"]: r["resource"] for r in detail}
    assert by_project["(total)"] == {"host": "h1", "project": "(total)", "cpu": 8, "memory_mb": 8192, "disk_gb": 80}
    assert by_project["(used_now)"]["memory_mb"] == 64
    assert by_project["(used_max)"] == {**by_project[world.a.project_id], "project": "(used_max)"} and \
        by_project[world.a.project_id]["cpu"] == 1
    missing = client.get("/v2.1/os-hosts/nowhere", headers={**admin, **old})
    assert missing.status_code == 404 and missing.get_json()["itemNotFound"]["message"] == \
        "Compute host nowhere could not be found."
    r = client.put("/v2.1/os-hosts/h1", json={"status": "disable"}, headers={**admin, **old})
    assert r.status_code == 200 and r.get_json() == {"host": "h1", "status": "disabled"}
    svc = client.get("/v2.1/os-services?host=h1", headers={**admin, **COMPUTE}).get_json()["services"][0]
    assert svc["status"] == "disabled"
    assert client.put("/v2.1/os-hosts/h1", json={"status": "Enable"}, headers={**admin, **old}).get_json() == \
        {"host": "h1", "status": "enabled"}
    for bad in ({}, {"status": "off"}, {"status": None}, {"bogus": "enable"}):
        assert client.put("/v2.1/os-hosts/h1", json=bad, headers={**admin, **old}).status_code == 400, bad
    r = client.put("/v2.1/os-hosts/h1", json={"maintenance_mode": "enable"}, headers={**admin, **old})
    assert r.status_code == 501 and "notImplemented" in r.get_json()
    for action in ("startup", "shutdown", "reboot"):
        assert client.get(f"/v2.1/os-hosts/h1/{action}", headers={**admin, **old}).status_code == 501
        assert client.get(f"/v2.1/os-hosts/nowhere/{action}", headers={**admin, **old}).status_code == 404


# --- /extensions ----------------------------------------------------------------------------------------------------

def test_extensions_list_what_stratus_serves(client, world: World, app, monkeypatch):
    from app.compute import extensions
    member = {**world.a.headers, **_v("2.1")}
    listed = client.get("/v2.1/extensions", headers=member).get_json()["extensions"]
    aliases = [e["alias"] for e in listed]
    assert aliases == sorted(aliases)
    assert {"os-hosts", "os-create-backup", "os-admin-actions", "os-server-password", "os-keypairs",
            "os-instance_usage_audit_log", "OS-EXT-STS"} <= set(aliases)
    # Nova lists these too, but Stratus has no such API: not claimed
    assert not {"os-agents", "os-cells", "os-floating-ips", "os-volumes", "os-security-groups"} & set(aliases)
    shown = client.get("/v2.1/extensions/os-create-backup", headers=member).get_json()["extension"]
    assert shown == {"alias": "os-create-backup", "description": "Create a backup of a server.", "links": [],
                     "name": "CreateBackup", "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
                     "updated": "2014-12-03T00:00:00Z"}
    missing = client.get("/v2.1/extensions/os-cells", headers=member)
    assert missing.status_code == 404 and "itemNotFound" in missing.get_json()
    # an entry goes when its evidence is not served
    monkeypatch.setattr(extensions, "_KNOWN", (*extensions._KNOWN, ("os-x", "X", "x.", "route", "/v2.1/os-x"),
                                               ("os-y", "Y", "y.", "action", "os-y")))
    with app.test_request_context():
        assert {"os-x", "os-y"}.isdisjoint(e["alias"] for e in extensions.implemented())


# --- the image proxy (until 2.35) ------------------------------------------------------------------------------------

def test_image_proxy_until_2_35(client, world: World):
    member, old = {**world.a.headers, **_v("2.35")}, _v("2.35")
    url = f"/v2.1/images/{world.image_id}"
    assert client.get("/v2.1/images", headers={**world.a.headers, **_v("2.36")}).status_code == 404
    assert client.get(url, headers={**world.a.headers, **_v("2.36")}).status_code == 404
    listed = client.get("/v2.1/images", headers=member).get_json()["images"]
    assert [i["id"] for i in listed] == [world.image_id]
    assert set(listed[0]) == {"id", "name", "links"}
    assert [link["rel"] for link in listed[0]["links"]] == ["self", "bookmark", "alternate"]
    assert client.get("/v2.1/images", headers={**world.b.headers, **old}).get_json()["images"] == []  # private
    image = client.get(url, headers=member).get_json()["image"]
    assert (image["status"], image["progress"], image["minRam"], image["OS-EXT-IMG-SIZE:size"]) == \
        ("ACTIVE", 100, 0, 512)
    assert client.get(url, headers={**world.b.headers, **old}).status_code == 404
    detail = client.get("/v2.1/images/detail?status=ACTIVE", headers=member).get_json()["images"]
    assert detail == [image]
    assert client.get("/v2.1/images/detail?status=SAVING", headers=member).get_json()["images"] == []
    # metadata: set, merge, show, replace, delete, and Nova's errors
    meta = f"{url}/metadata"
    assert client.get(meta, headers=member).get_json() == {"metadata": {}}
    assert client.post(meta, json={"metadata": {"a": "1"}}, headers=member).get_json() == {"metadata": {"a": "1"}}
    assert client.post(meta, json={"metadata": {"b": "2"}}, headers=member).get_json() == \
        {"metadata": {"a": "1", "b": "2"}}
    assert client.get(f"{meta}/a", headers=member).get_json() == {"meta": {"a": "1"}}
    assert client.get(f"{meta}/zz", headers=member).status_code == 404
    assert client.put(f"{meta}/c", json={"meta": {"c": "3"}}, headers=member).get_json() == {"meta": {"c": "3"}}
    bad = client.put(f"{meta}/c", json={"meta": {"d": "3"}}, headers=member)
    assert bad.status_code == 400 and bad.get_json()["badRequest"]["message"] == "Request body and URI mismatch"
    assert client.put(meta, json={"metadata": {"x": "y"}}, headers=member).get_json() == {"metadata": {"x": "y"}}
    assert client.get(url, headers=member).get_json()["image"]["metadata"] == {"x": "y"}
    assert client.delete(f"{meta}/x", headers=member).status_code == 204
    assert client.delete(f"{meta}/x", headers=member).get_json()["itemNotFound"]["message"] == "Invalid metadata key"
    assert client.post(meta, json={"metadata": {"k": "v"}}, headers={**world.reader.headers, **old}).status_code \
        == 403  # a reader sees the image but may not change it
    # delete
    assert client.delete(url, headers={**world.b.headers, **old}).status_code == 404
    assert client.delete(url, headers=member).status_code == 204
    gone = client.get(url, headers=member)
    assert gone.status_code == 404 and gone.get_json()["itemNotFound"]["message"] == "Image not found."
