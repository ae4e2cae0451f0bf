"""Live-migration management: 2.22 force_complete, 2.24 / 2.65 abort, 2.34 asynchronous pre-checks (in-process
API and conductor; the compute steps are captured, not run), and the fake driver's abortable copy."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import select

from core.power_state import PowerState
from drivers.base import DriverError, LiveMigrationAborted
from drivers.fake import FakeDriver
from tests.unit.inprocess import compute_version as _v
from tests.unit.inprocess import inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_fake_driver import spec



@pytest.fixture
def placed(world):
    """world's server ACTIVE on h1 (its resources allocated there), h2 free; both compute services up."""
    from core.db import write_session
    from core.models import ComputeNode, Instance, Service, utcnow
    from core.writes import resources
    with write_session() as s:
        for host in ("h1", "h2"):
            svc = Service(host=host, binary="nova-compute", topic="compute", last_seen_at=utcnow())
            s.add(svc)
            s.flush()
            s.add(ComputeNode(service_id=svc.id, host=host, hypervisor_hostname=host, hypervisor_type="fake",
                              hypervisor_version=1, vcpus=8, memory_mb=4096, local_gb=40, vcpus_used=0,
                              memory_mb_used=0, local_gb_used=0, running_vms=0))
        s.flush()
        inst = s.scalars(select(Instance).where(Instance.uuid == world.server_id)).one()
        inst.vm_state, inst.task_state, inst.host, inst.node = "active", None, "h1", "h1"
        assert resources.claim(s, inst, "h1")
    return world


@pytest.fixture
def canvases(monkeypatch) -> list[tuple[str, tuple]]:
    """Canvases the conductor starts, as (first task name, args); nothing runs."""
    from tasks.conductor import live
    started: list[tuple[str, tuple]] = []

    class Sig:
        def __init__(self, name: str, *args: object):
            self.name, self.args = name, args

        def apply_async(self) -> None:
            started.append((self.name, self.args))

    monkeypatch.setattr(live, "sig", Sig)
    monkeypatch.setattr(live, "chain", lambda first, *rest: first)
    monkeypatch.setattr(live, "run_ops", lambda ctx: started.append(("stratus.compute.move_op", (ctx,))))
    return started


def _state() -> dict:
    from core.db import read_session
    from core.models import Allocation, ComputeNode, Instance, Migration
    with read_session() as s:
        inst = s.scalars(select(Instance)).one()
        migs = list(s.scalars(select(Migration).order_by(Migration.id)))
        allocs = s.execute(select(Allocation.instance_uuid, ComputeNode.host)
                           .join(ComputeNode, ComputeNode.id == Allocation.compute_node_id)).all()
        return {"vm": (inst.vm_state, inst.task_state, inst.host), "migrations": [(m.status, m.dest_compute)
                                                                                   for m in migs],
                "allocations": sorted((h, u == inst.uuid) for u, h in allocs),
                "mig_uuid": migs[-1].uuid if migs else None, "mig_id": migs[-1].id if migs else None}


def _events(client, world, version: str = "2.84") -> dict[str, list]:
    h = {**world.admin.headers, **_v(version)}
    actions = client.get(f"/v2.1/servers/{world.server_id}/os-instance-actions", headers=h).get_json()
    out = {}
    for a in actions["instanceActions"]:
        shown = client.get(f"/v2.1/servers/{world.server_id}/os-instance-actions/{a['request_id']}", headers=h)
        out[a["action"]] = [(e["event"], e["result"], e.get("details")) for e in
                            shown.get_json()["instanceAction"]["events"]]
    return out


def _live_migrate(client, world, version: str, host: str | None = "h2"):
    return client.post(f"/v2.1/servers/{world.server_id}/action",
                       json={"os-migrateLive": {"host": host, "block_migration": "auto"}},
                       headers={**world.admin.headers, **_v(version)})


# --- 2.34: the pre-checks run after the 202 ----------------------------------------------------------------------

@pytest.mark.parametrize("host, message", [("nowhere", "Compute host nowhere could not be found."),
                                           ("h1", "The target host can't be the same one.")])
def test_prechecks_are_synchronous_below_2_34_and_recorded_from_2_34(client, placed, canvases, host, message):
    from tasks.conductor import live
    before = _state()
    old = _live_migrate(client, placed, "2.33", host)
    assert old.status_code == 400 and old.get_json()["badRequest"]["message"] == message
    assert _state() == before and canvases == []  # nothing written, nothing started

    new = _live_migrate(client, placed, "2.34", host)
    assert new.status_code == 202, new.get_data(as_text=True)
    ((name, (ctx,)),) = canvases
    assert name == "stratus.conductor.live_migration_prechecks"
    assert _state()["migrations"] == [("accepted", None)]
    live.live_migration_prechecks(ctx)
    after = _state()
    assert after["vm"] == ("active", None, "h1") and after["migrations"] == [("error", None)]
    assert after["allocations"] == [("h1", True)]
    assert _events(client, placed)["live-migration"] == [("conductor_live_migrate_instance", "Error", message)]
    live.live_migration_prechecks(ctx)  # redelivered: nothing more happens
    assert _state()["migrations"] == [("error", None)] and len(canvases) == 1


def test_prechecks_passing_from_2_34_queue_the_migration(client, placed, canvases):
    from tasks.conductor import live
    assert _live_migrate(client, placed, "2.34", None).status_code == 202
    live.live_migration_prechecks(canvases[0][1][0])
    assert canvases[1][0] == "stratus.compute.move_op" and canvases[1][1][0]["dest"] == "h2"
    state = _state()
    assert state["vm"] == ("active", "migrating", "h1") and state["migrations"] == [("queued", "h2")]
    assert state["allocations"] == [("h1", False), ("h2", True)]  # the source's now belongs to the migration
    listed = client.get(f"/v2.1/servers/{placed.server_id}/migrations",
                        headers={**placed.admin.headers, **_v("2.23")}).get_json()["migrations"]
    assert [(m["status"], m["dest_compute"]) for m in listed] == [("queued", "h2")]


# --- 2.22 force_complete / 2.24 abort: version gates, policy and Nova's checks --------------------------------------

def test_force_complete_and_abort_routes_are_version_gated(client, placed, canvases):
    base = f"/v2.1/servers/{placed.server_id}/migrations/1"
    body = {"force_complete": None}
    admin = placed.admin.headers
    assert client.post(f"{base}/action", json=body, headers={**admin, **_v("2.21")}).status_code == 404
    assert client.delete(base, headers={**admin, **_v("2.23")}).status_code == 404
    assert client.post(f"{base}/action", json=body, headers={**placed.a.headers, **_v("2.22")}).status_code == 403
    assert client.delete(base, headers={**placed.a.headers, **_v("2.24")}).status_code == 403
    # not migrating: Nova's 409 from the instance's state
    resp = client.post(f"{base}/action", json=body, headers={**admin, **_v("2.22")})
    assert resp.status_code == 409 and resp.get_json()["conflictingRequest"]["message"] == \
        f"Cannot 'force_complete' instance {placed.server_id} while it is in task_state None"
    resp = client.delete(base, headers={**admin, **_v("2.24")})
    assert resp.status_code == 409 and "Cannot 'abort live migration' instance" in resp.get_data(as_text=True)
    for bad in ({"force_complete": {}}, {"force_complete": None, "x": 1}, {"finish": None}, []):
        assert client.post(f"{base}/action", json=bad, headers={**admin, **_v("2.22")}).status_code == 400, bad
    other = f"/v2.1/servers/{uuid.uuid4()}/migrations/1"
    assert client.delete(other, headers={**admin, **_v("2.24")}).status_code == 404
    assert canvases == []


def test_abort_and_force_complete_of_a_running_or_queued_migration(client, placed, canvases):
    from tasks.conductor import live
    assert _live_migrate(client, placed, "2.25").status_code == 202  # below 2.34: queued at once
    mig_id, mig_uuid = _state()["mig_id"], _state()["mig_uuid"]
    admin = placed.admin.headers
    url = f"/v2.1/servers/{placed.server_id}/migrations"
    # unknown migration: 400 for force_complete, 404 for abort (Nova's mapping)
    assert client.post(f"{url}/999/action", json={"force_complete": None},
                       headers={**admin, **_v("2.22")}).get_json()["badRequest"]["message"] == \
        f"Migration 999 not found for instance {placed.server_id}"
    assert client.delete(f"{url}/999", headers={**admin, **_v("2.24")}).status_code == 404
    # queued: not yet forceable; abortable only from 2.65
    queued = client.post(f"{url}/{mig_id}/action", json={"force_complete": None}, headers={**admin, **_v("2.22")})
    assert queued.status_code == 400 and "is queued. Cannot force complete" in queued.get_data(as_text=True)
    assert client.delete(f"{url}/{mig_id}", headers={**admin, **_v("2.64")}).status_code == 400
    # running (the compute step reported the copy started): both go to the source's driver
    live.live_migration_running({"migration_uuid": mig_uuid})
    assert _state()["migrations"] == [("running", "h2")]
    for resp in (client.post(f"{url}/{mig_id}/action", json={"force_complete": None}, headers={**admin,
                                                                                               **_v("2.22")}),
                 client.delete(f"{url}/{mig_id}", headers={**admin, **_v("2.24")})):
        assert resp.status_code == 202, resp.get_data(as_text=True)
    assert [(name, ctx["action"], ctx["host"]) for name, (ctx, *_) in canvases[1:]] == [
        ("stratus.compute.live_migration_control", "live_migration_force_complete", "h1"),
        ("stratus.compute.live_migration_control", "live_migration_abort", "h1")]
    assert _state()["migrations"] == [("running", "h2")]  # the driver decides; the canvas records the outcome


def test_abort_of_a_queued_migration_from_2_65_ends_it_in_the_conductor(client, placed, canvases):
    from tasks.conductor import live, moves
    assert _live_migrate(client, placed, "2.25").status_code == 202
    (_, (ctx,)), = canvases
    mig_id = _state()["mig_id"]
    resp = client.delete(f"/v2.1/servers/{placed.server_id}/migrations/{mig_id}",
                         headers={**placed.admin.headers, **_v("2.65")})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    state = _state()
    assert state["vm"] == ("active", None, "h1") and state["migrations"] == [("cancelled", "h2")]
    assert state["allocations"] == [("h1", True)]
    assert _events(client, placed)["live_migration_cancel"] == [
        ("compute_live_migration_abort", "Success", None)]
    # the canvas's late steps write nothing: its compute step would stop, its finish lost the race
    moves.finish_move({**ctx, "power_state": PowerState.RUNNING})
    moves.move_failed(ctx, "late", "")
    assert _state() == state


def test_finish_of_an_aborted_copy_returns_the_server_to_its_source(client, placed, canvases):
    from tasks.conductor import live, moves
    _live_migrate(client, placed, "2.25")
    (_, (ctx,)), = canvases
    live.live_migration_running(ctx)
    moves.finish_move({**ctx, "aborted": True, "power_state": PowerState.RUNNING})
    state = _state()
    assert state["vm"] == ("active", None, "h1") and state["migrations"] == [("cancelled", "h2")]
    assert state["allocations"] == [("h1", True)]
    moves.finish_move({**ctx, "power_state": PowerState.RUNNING})  # a redelivery changes nothing
    assert _state() == state


# --- the fake driver's copy: takes time, can be aborted or forced ----------------------------------------------------

def _migrating(seconds: float) -> tuple[FakeDriver, str, str, threading.Thread, dict]:
    src, dst = f"src-{uuid.uuid4().hex[:6]}", f"dst-{uuid.uuid4().hex[:6]}"
    drv, _ = FakeDriver(src, live_migration_seconds=seconds), FakeDriver(dst)
    s = spec()
    drv.build_disk(s)
    drv.spawn(s)
    started, outcome = threading.Event(), {}

    def run() -> None:
        try:
            drv.live_migrate(s.uuid, dst, on_started=started.set)
            outcome["done"] = True
        except LiveMigrationAborted as exc:
            outcome["aborted"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(5)
    return drv, s.uuid, dst, thread, outcome


def test_fake_live_migration_can_be_aborted_or_forced():
    drv, guest, dst, thread, outcome = _migrating(30)
    t0 = time.monotonic()
    drv.live_migration_abort(guest)
    thread.join(5)
    assert "aborted" in outcome and time.monotonic() - t0 < 2
    assert drv.get_info(guest).power_state == PowerState.RUNNING  # still here
    with pytest.raises(DriverError, match="No live migration"):
        drv.live_migration_abort(guest)

    drv, guest, dst, thread, outcome = _migrating(30)
    drv.live_migration_force_complete(guest)
    thread.join(5)
    assert outcome == {"done": True}
    assert guest not in drv.list_instances() and guest in FakeDriver(dst).list_instances()
    assert "forced to complete" in FakeDriver(dst).get_console_output(guest)
    FakeDriver(drv.host).live_migrate(guest, dst)  # a retried step finds the guest arrived
    with pytest.raises(DriverError, match="No live migration"):
        drv.live_migration_force_complete(guest)


def test_libvirt_and_fake_have_the_live_migration_calls():
    from drivers import supports
    assert supports("libvirt", "live_migration_abort") and supports("fake", "live_migration_abort")


def test_fake_live_migration_to_another_worker_process_hands_the_guest_over():
    """The destination's pre step names another process: the source hands the guest over in its result and drops
    it; the destination's post step takes it in (its record, not a new boot). An abort rolls the pre step back."""
    src, dst = FakeDriver(f"src-{uuid.uuid4().hex[:6]}"), FakeDriver(f"dst-{uuid.uuid4().hex[:6]}")
    s = spec()
    src.build_disk(s)
    src.spawn(s)
    console = src.get_console_output(s.uuid)
    data = {**dst.pre_live_migration(s), "fake_process": "another worker process"}
    assert s.uuid not in dst.list_instances() and s.uuid in dst.list_disks()  # prepared, not running
    handed = src.live_migrate(s.uuid, dst.host, migrate_data=data)
    assert s.uuid not in src.list_disks()
    assert src.live_migrate(s.uuid, dst.host, migrate_data=data) is None  # a retried step: the guest left
    dst.post_live_migration_at_destination(s, handed)
    assert dst.list_instances() == [s.uuid] and dst.get_info(s.uuid).power_state == PowerState.RUNNING
    assert dst.get_console_output(s.uuid).startswith(console.rsplit("\n", 2)[0])
    assert f"live-migrated from {src.host} to {dst.host}" in dst.get_console_output(s.uuid)

    other = FakeDriver(f"dst-{uuid.uuid4().hex[:6]}")
    data = {**other.pre_live_migration(s), "fake_process": "another worker process"}
    assert s.uuid in other.list_disks()
    other.rollback_live_migration_at_destination(s.uuid)  # (after an aborted copy)
    assert other.list_disks() == [] and dst.list_instances() == [s.uuid]
