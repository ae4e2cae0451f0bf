"""Reliability pieces that need no processes: the start-up reconciliation plan, fake guests that outlive the
worker, the placement-style audit command and 503 (not 500) when the database is unreachable."""
from __future__ import annotations

import uuid

import pytest

from core.power_state import PowerState
from drivers import fake
from drivers.base import ImageSpec, InstanceSpec
from tasks.reconcile import InstanceRow, plan


def _row(host="h1", deleted=False, vm_state="active", task_state=None, uid=None) -> InstanceRow:
    return InstanceRow(uid or str(uuid.uuid4()), host, deleted, vm_state, task_state)


def test_plan_adopts_flags_missing_and_destroys_orphans():
    known, lost, gone, moved, building, stranger = (_row(), _row(), _row(deleted=True), _row(host="h2"),
                                                    _row(vm_state="building", task_state="spawning"),
                                                    str(uuid.uuid4()))
    error_no_guest = _row(vm_state="error")
    stopped_lost = _row(vm_state="stopped")
    guests = {known.uuid, gone.uuid, stranger}
    disks = {moved.uuid, building.uuid}
    out = plan("h1", guests, disks, [known, lost, gone, moved, building, error_no_guest, stopped_lost])
    assert out.adopt == [known.uuid]
    assert sorted(out.missing) == sorted([lost.uuid, stopped_lost.uuid])
    assert sorted(out.orphans) == sorted([gone.uuid, moved.uuid])
    assert out.unknown == [stranger]  # never destroyed: it may belong to another cloud on this hypervisor


def test_plan_leaves_tasks_in_flight_alone():
    stopping = _row(task_state="powering-off")
    out = plan("h1", set(), set(), [stopping])
    assert out.missing == [] and out.orphans == [] and out.adopt == []


def _spec() -> InstanceSpec:
    image = ImageSpec(id="img", disk_format="raw", container_format="bare", size=1, checksum=None, properties={},
                      path="/dev/null")
    return InstanceSpec(uuid=str(uuid.uuid4()), name="vm", hostname="vm", project_id="p", user_id="u", vcpus=1,
                        memory_mb=64, root_gb=1, flavor_name="f", flavor_id="1", image=image)


def test_fake_guests_outlive_the_worker_process(tmp_path):
    host = f"persist-{uuid.uuid4().hex[:6]}"
    d = fake.FakeDriver(host, state_dir=tmp_path)
    running, half_built = _spec(), _spec()
    d.build_disk(running)
    d.spawn(running)
    d.power_off(running.uuid)
    with fake._lock:  # a disk cut short by a kill: "building" on disk
        d._guests[half_built.uuid] = {"power_state": 0, "vcpus": 1, "memory_mb": 64, "root_gb": 1, "console": [],
                                      "spawned": False, "disk": "building"}
        d._save(half_built.uuid)
    del fake._guests[host]  # the worker process dies; the "hypervisor" keeps its files

    again = fake.FakeDriver(host, state_dir=tmp_path)
    assert again.list_instances() == [running.uuid]
    assert set(again.list_disks()) == {running.uuid, half_built.uuid}
    assert again.get_info(running.uuid).power_state == PowerState.SHUTDOWN
    again.build_disk(half_built)  # a redelivered build_disk finishes the disk
    again.spawn(half_built)
    assert set(again.list_instances()) == {running.uuid, half_built.uuid}
    again.destroy(running.uuid)
    again.destroy(half_built.uuid)
    assert list(tmp_path.glob("*.json")) == []


def test_fake_spawn_refuses_an_unfinished_disk(tmp_path):
    d = fake.FakeDriver(f"persist-{uuid.uuid4().hex[:6]}", state_dir=tmp_path)
    s = _spec()
    with fake._lock:
        d._guests[s.uuid] = {"power_state": 0, "vcpus": 1, "memory_mb": 64, "root_gb": 1, "console": [],
                             "spawned": False, "disk": "building"}
    with pytest.raises(Exception, match="not built"):
        d.spawn(s)


def test_audit_command_lists_and_heals_orphaned_allocations(app):
    from core.db import write_session
    from core.models import Allocation, ComputeNode, Service

    with write_session() as s:
        svc = Service(host="h1", binary="nova-compute", topic="compute")
        s.add(svc)
        s.flush()
        node = ComputeNode(service_id=svc.id, host="h1", hypervisor_hostname="h1", hypervisor_type="fake",
                           hypervisor_version=1, vcpus=4, memory_mb=1024, local_gb=10, vcpus_used=1,
                           memory_mb_used=128, local_gb_used=1, running_vms=1)
        s.add(node)
        s.flush()
        s.add(Allocation(instance_uuid="0f0f0f0f-0000-0000-0000-000000000001", compute_node_id=node.id, vcpus=1,
                         memory_mb=128, disk_gb=1))
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["stratus", "audit"])
    assert listed.exit_code == 3, listed.output
    assert "0f0f0f0f-0000-0000-0000-000000000001" in listed.output and "instance=missing" in listed.output
    healed = runner.invoke(args=["stratus", "audit", "--delete"])
    assert healed.exit_code == 4 and "1 orphaned allocation(s) deleted" in healed.output
    clean = runner.invoke(args=["stratus", "audit"])
    assert clean.exit_code == 0 and "0 orphaned allocation(s) found" in clean.output
    with write_session() as s:
        node = s.get(ComputeNode, node.id)
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used, node.running_vms) == (0, 0, 0, 0)


def test_api_answers_503_when_the_database_is_unreachable(app, client, admin, monkeypatch):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from core import db

    # Every session now connects to a PostgreSQL that is not there (port 1): a real connection error.
    dead = sessionmaker(bind=create_engine("postgresql+psycopg://root@127.0.0.1:1/none"))
    with monkeypatch.context() as patch:
        patch.setattr(db, "_factory", lambda _for_writes: dead)
        resp = client.get("/v2.1/servers", headers=admin.headers)
    assert resp.status_code == 503, resp.get_json()
    assert resp.headers["Retry-After"] == "5"
    assert resp.get_json()["serviceUnavailable"]["code"] == 503


def test_heartbeats_go_on_after_publishes_fail(monkeypatch):
    """A broker outage longer than the publish retries makes send_task raise; the heartbeat thread must log it
    and go on, or every host looks down service_down_time later and the scheduler refuses every boot."""
    import threading

    from kombu.exceptions import OperationalError

    from tasks import compute

    sent: list[tuple[str, tuple]] = []
    outage = {"left": 4}
    stop = threading.Event()

    def send_task(name, args=(), **_):
        if outage["left"]:
            outage["left"] -= 1
            raise OperationalError("[Errno 111] Connection refused")
        sent.append((name, args))
        if sum(n == "stratus.conductor.heartbeat" for n, _ in sent) >= 2:
            stop.set()

    monkeypatch.setattr(compute.celery, "send_task", send_task)
    monkeypatch.setattr(compute.sync_power_states, "apply_async", lambda **_: None)
    monkeypatch.setattr(compute, "_reconcile_all", lambda hosts: [])
    monkeypatch.setattr(compute, "consumer_alive", lambda: (True, ""))  # the worker's consumer (none here)
    monkeypatch.setattr(compute, "driver_for", lambda host: fake.FakeDriver(host))
    monkeypatch.setattr(compute, "get_settings", lambda: type("S", (), {
        "report_interval": 0.01, "compute_driver": "fake", "availability_zone": "nova"})())
    loop = threading.Thread(target=compute.heartbeat_loop, args=(["h1"], stop), daemon=True)
    loop.start()
    loop.join(10)
    assert not loop.is_alive(), f"the heartbeat loop stopped sending after the outage: {sent}"
    assert sent[0][0] == "stratus.conductor.heartbeat" and sent[0][1][1]["h1"]["up"]  # registered once the
    assert [n for n, _ in sent[1:]].count("stratus.conductor.heartbeat") == 1  # broker was back, then a beat


def test_plan_keeps_the_guests_of_moves_in_flight():
    """Found by the chaos soak: a compute worker restarted while a resize awaited confirmation destroyed the
    source guest the revert needs (the row's host is the destination); a guest an unshelve is spawning (the row
    has no host yet) was destroyed too."""
    resized = _row(host="h2", vm_state="resized")
    resized = InstanceRow(resized.uuid, "h2", False, "resized", None, ("h1", "h2"))
    unshelving = _row(host=None, vm_state="shelved_offloaded", task_state="unshelving")
    moved_away = _row(host="h2")
    out = plan("h1", {resized.uuid, unshelving.uuid, moved_away.uuid}, set(), [resized, unshelving, moved_away])
    assert out.orphans == [moved_away.uuid] and out.missing == []
