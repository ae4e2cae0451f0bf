"""Live-migration management on a real 2-host fake cloud: abort (2.24) and force-complete (2.22) of a running live
migration, their version gates, and 2.34's asynchronous pre-checks.

The stack is this module's own: its fake live migrations copy for FAKE_SECONDS, a window in which the migration is
``running`` and can be aborted or forced (the shared ``stack`` keeps them instant for the other scenarios)."""
from __future__ import annotations

import time

import pytest

from tests.functional.test_server_actions import Api, boot, fault, host_of, hypervisor_usage, upload_image
from harness.stack import BACKENDS, Stack

pytestmark = [pytest.mark.services, pytest.mark.backends("sqlite-filesystem")]
FAKE_SECONDS = 30  # never reached: each migration here is aborted or forced long before


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    backend = BACKENDS["sqlite-filesystem"]
    if backend.missing():
        pytest.skip(f"!!! BACKEND {backend.name} UNAVAILABLE: {backend.missing()} !!!")
    st = Stack(tmp_path_factory.mktemp("live-migration"), backend,
               extra_env={"STRATUS_FAKE_LIVE_MIGRATION_SECONDS": str(FAKE_SECONDS)})
    try:
        st.start()
        api = Api(st, st.admin_token())
        api.image = upload_image(st.admin_token(), st, "lm-img", b"live " * 100)
        api.stack = st
        yield api
    finally:
        st.stop()


def migrations(admin: Api, sid: str) -> list[dict]:
    return admin("GET", f"/os-migrations?instance_uuid={sid}", version="2.59").json()["migrations"]


def start_running(admin: Api, sid: str) -> dict:
    """Live-migrate (scheduler's choice) and wait until the copy runs."""
    r = admin("POST", f"/servers/{sid}/action", {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        listed = admin("GET", f"/servers/{sid}/migrations", version="2.24").json()["migrations"]
        if listed and listed[0]["status"] == "running":
            assert admin.server(sid)["OS-EXT-STS:task_state"] == "migrating"
            return listed[0]
        time.sleep(0.1)
    raise AssertionError(f"no running live migration: {migrations(admin, sid)}")


def events(admin: Api, sid: str, action: str) -> list[tuple[str, str]]:
    actions = admin("GET", f"/servers/{sid}/os-instance-actions").json()["instanceActions"]
    req = next(a["request_id"] for a in actions if a["action"] == action)
    shown = admin("GET", f"/servers/{sid}/os-instance-actions/{req}").json()["instanceAction"]
    return [(e["event"], e["result"]) for e in shown["events"]]


def test_abort_and_force_complete_of_running_live_migrations(admin):
    sid = boot(admin, admin.image, "lm-vm")
    source = host_of(admin, sid)
    before = hypervisor_usage(admin)

    # abort: the copy stops, the server stays ACTIVE on its source, the destination's claim is released
    mig = start_running(admin, sid)
    dest = mig["dest_compute"]
    assert dest != source and mig["source_compute"] == source
    url = f"/servers/{sid}/migrations/{mig['id']}"
    assert admin("DELETE", url, version="2.23").status_code == 404
    assert admin("POST", f"{url}/action", {"force_complete": None}, version="2.21").status_code == 404
    # the unmodified CLI, as operators do it
    admin.stack.openstack("--os-compute-api-version", "2.24", "server", "migration", "abort", sid, str(mig["id"]))
    server = admin.wait(sid, "ACTIVE", timeout=10)
    assert server["OS-EXT-SRV-ATTR:host"] == source
    assert [m["status"] for m in migrations(admin, sid)] == ["cancelled"]
    assert admin("GET", f"/servers/{sid}/migrations", version="2.24").json()["migrations"] == []
    usage = hypervisor_usage(admin)
    assert {h: u["memory_mb_used"] for h, u in usage.items()} == \
        {h: u["memory_mb_used"] for h, u in before.items()}  # allocations only on the source, as before
    assert fault(admin("DELETE", url, version="2.24"), 409).endswith("while it is in task_state None")
    assert ("compute_live_migration_abort", "Success") in events(admin, sid, "live_migration_cancel")

    # force-complete: the copy finishes now, the server runs on the destination, the source's claim is released
    mig = start_running(admin, sid)
    t0 = time.monotonic()
    admin.stack.openstack("--os-compute-api-version", "2.22", "server", "migration", "force", "complete", sid,
                          str(mig["id"]))
    server = admin.wait(sid, "ACTIVE", timeout=10)
    assert time.monotonic() - t0 < FAKE_SECONDS / 2
    assert server["OS-EXT-SRV-ATTR:host"] == dest
    assert [m["status"] for m in migrations(admin, sid)] == ["completed", "cancelled"]
    usage = hypervisor_usage(admin)
    assert usage[source]["memory_mb_used"] == before[source]["memory_mb_used"] - 128
    assert usage[dest]["memory_mb_used"] == before[dest]["memory_mb_used"] + 128
    assert ("compute_live_migration_force_complete", "Success") in \
        events(admin, sid, "live_migration_force_complete")
    log = admin("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}}).json()["output"]
    assert f"live migration to {dest} aborted" in log and "(forced to complete)" in log


def test_prechecks_are_asynchronous_from_2_34(admin):
    sid = boot(admin, admin.image, "lm-precheck")
    host = host_of(admin, sid)
    body = {"os-migrateLive": {"host": "nowhere", "block_migration": "auto"}}
    assert fault(admin("POST", f"/servers/{sid}/action", body, version="2.33"), 400) == \
        "Compute host nowhere could not be found."
    assert migrations(admin, sid) == []
    r = admin("POST", f"/servers/{sid}/action", body, version="2.34")
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 10
    while migrations(admin, sid)[0]["status"] != "error" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [m["status"] for m in migrations(admin, sid)] == ["error"]
    server = admin.wait(sid, "ACTIVE", timeout=10)
    assert server["OS-EXT-SRV-ATTR:host"] == host
    assert events(admin, sid, "live-migration") == [("conductor_live_migrate_instance", "Error")]
