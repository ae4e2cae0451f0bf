"""Issue 25 (10,000 hosts): a compute worker sends ONE message per report interval for all its hosts (heartbeat and
the inventories that changed since it last sent them) and ONE start-up reconciliation for all of them; the
conductor applies a batch with a few reads and writes only what differs."""
from __future__ import annotations

import logging

import pytest

from core import states
from core.power_state import PowerState

HOSTS = ["b1", "b2", "b3"]


@pytest.fixture
def worker(stratus_env, monkeypatch):
    """Three fake hosts in this process; what the worker sends is captured (name, args)."""
    from drivers import fake
    from tasks import compute
    sent: list[tuple[str, tuple]] = []
    drivers = {h: fake.FakeDriver(h) for h in HOSTS}
    monkeypatch.setattr(compute, "driver_for", lambda host: drivers[host])
    monkeypatch.setattr(compute, "consumer_alive", lambda: (True, ""))
    monkeypatch.setattr(compute.celery, "send_task", lambda name, args=(), **kw: sent.append((name, args)))
    monkeypatch.setattr(compute.sync_power_states, "apply_async", lambda *a, **kw: None)
    return compute, drivers, sent


def test_one_message_per_interval_carrying_only_the_inventories_that_changed(worker):
    compute, drivers, sent = worker
    reported: dict = {}
    healthy, pending = compute._heartbeat_tick(HOSTS, None, list(HOSTS), 0, reported)
    assert healthy == HOSTS and pending == []
    # registration: one report with every host's inventory, one batched reconciliation
    assert [n for n, _ in sent] == ["stratus.conductor.heartbeat", "stratus.conductor.reconcile_hosts"]
    up, reports, served = sent[0][1]
    assert up == HOSTS and sorted(reports) == HOSTS and served == HOSTS
    assert sorted(sent[1][1][0]) == HOSTS
    sent.clear()
    for tick in range(1, compute.INVENTORY_EVERY + 1):  # plain beats, then an inventory poll with nothing new
        compute._heartbeat_tick(HOSTS, healthy, [], tick, reported)
    assert sent == [("stratus.conductor.heartbeat", (HOSTS,))] * compute.INVENTORY_EVERY
    sent.clear()
    drivers["b2"].vcpus = 64  # an inventory that changed: a later poll sends that host's only
    assert (3 * compute.INVENTORY_EVERY) % compute.FULL_REPORT_EVERY
    compute._heartbeat_tick(HOSTS, healthy, [], 3 * compute.INVENTORY_EVERY, reported)  # not a full report's tick
    (name, (up, reports, served)), = sent
    assert up == HOSTS and list(reports) == ["b2"] and reports["b2"]["vcpus"] == 64 and served == HOSTS
    sent.clear()
    compute._heartbeat_tick(HOSTS, healthy, [], compute.FULL_REPORT_EVERY, reported)  # the rare full refresh
    (name, (up, reports, served)), = sent
    assert sorted(reports) == HOSTS


def test_a_broken_driver_is_reported_down_once_and_retried_every_interval(worker, monkeypatch):
    compute, drivers, sent = worker
    calls = []

    def broken(host):
        calls.append(host)
        if host == "b3":
            raise RuntimeError("hypervisor gone")
        return drivers[host]
    monkeypatch.setattr(compute, "driver_for", broken)
    reported: dict = {}
    healthy, _ = compute._heartbeat_tick(HOSTS, None, [], 0, reported)
    assert healthy == ["b1", "b2"] and sent[0][1][1]["b3"]["up"] is False
    sent.clear()
    calls.clear()
    compute._heartbeat_tick(HOSTS, healthy, [], 1, reported)
    assert calls == ["b3"]  # retried, but its unchanged "down" report is not sent again
    assert sent == [("stratus.conductor.heartbeat", (["b1", "b2"],))]


def _registered(hosts):
    from sqlalchemy import select

    from core.db import read_session
    from core.models import ComputeNode, Service
    with read_session() as s:
        nodes = {n.host: (n.vcpus, n.generation, n.updated_at) for n in s.scalars(select(ComputeNode))}
        services = {v.host: (v.last_seen_at, v.updated_at) for v in s.scalars(select(Service))}
    return {h: nodes.get(h) for h in hosts}, {h: services.get(h) for h in hosts}


def _inventory(host, vcpus=8):
    return {"hypervisor_hostname": host, "hypervisor_type": "fake", "hypervisor_version": 1, "vcpus": vcpus,
            "memory_mb": 4096, "local_gb": 40, "host_ip": None, "availability_zone": "nova", "up": True}


def test_the_conductor_applies_a_batch_and_writes_only_what_changed(stratus_env, caplog):
    from tasks.conductor import boot
    boot.heartbeat(["b1", "b2"], {h: _inventory(h) for h in ("b1", "b2")}, ["b1", "b2"])
    nodes, services = _registered(["b1", "b2"])
    assert nodes["b1"][0] == 8 and nodes["b2"][0] == 8 and all(v[0] for v in services.values())
    boot.heartbeat(["b1", "b2"], {"b1": _inventory("b1"), "b2": _inventory("b2", vcpus=16)}, ["b1", "b2"])
    after, beats = _registered(["b1", "b2"])
    assert after["b1"] == nodes["b1"]  # same inventory: the row is not written (its updated_at stays)
    assert after["b2"][0] == 16 and after["b2"][1] == nodes["b2"][1] + 1 and after["b2"][2] > nodes["b2"][2]
    assert beats["b1"][0] > services["b1"][0]  # both beat
    with caplog.at_level(logging.WARNING):  # a report about a host the sender does not serve is dropped
        boot.heartbeat(["b1", "x9"], {"b1": _inventory("b1"), "x9": _inventory("x9")}, ["b1"])
    assert _registered(["x9"]) == ({"x9": None}, {"x9": None})
    assert "inventory report about x9 refused" in caplog.text


def test_start_up_reconciliation_of_a_worker_is_one_message_each_way(stratus_env, monkeypatch):
    from sqlalchemy import select

    from core.db import read_session, write_session
    from core.models import Flavor, Instance
    from tasks import reconcile
    uuids = [f"0000000{i}-2222-3333-4444-555555555555" for i in range(3)]
    with write_session() as s:
        flavor = Flavor(flavorid="f1", name="f1", vcpus=1, memory_mb=64)
        s.add(flavor)
        s.flush()
        for uuid, host in zip(uuids, ("b1", "b2", "b2")):
            s.add(Instance(uuid=uuid, display_name="vm", hostname="vm", project_id="p", user_id="u",
                           image_ref="img", flavor_id=flavor.id, flavor_snapshot={"name": "f1"}, vcpus=1, memory_mb=64,
                           root_gb=0,
                           vm_state=states.ACTIVE, power_state=PowerState.RUNNING, host=host,
                           reservation_id="r", networks_request="none"))
    sent = []
    monkeypatch.setattr(reconcile.celery, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    orphan = uuids[2]  # placed on b2, found on b1
    answers = reconcile.reconcile_hosts({"b1": [[uuids[0], orphan], []], "b2": [[uuids[1]], []], "b3": [[], []]})
    assert sent == [("stratus.compute.reconciled_hosts", (answers,), "compute.b1")]
    assert answers["b1"] == {"orphans": [orphan], "unknown": [], "missing": [],
                             "adopt": {uuids[0]: PowerState.RUNNING}}
    assert answers["b2"] == {"orphans": [], "unknown": [], "missing": [orphan],
                             "adopt": {uuids[1]: PowerState.RUNNING}}
    assert answers["b3"] == {"orphans": [], "unknown": [], "missing": [], "adopt": {}}
    with read_session() as s:
        assert s.scalar(select(Instance.vm_state).where(Instance.uuid == orphan)) == states.ERROR
        assert s.scalar(select(Instance.vm_state).where(Instance.uuid == uuids[0])) == states.ACTIVE


def test_a_compute_worker_shares_one_producer_connection(stratus_env, monkeypatch):
    """Issue 25: a compute worker held 8 Redis connections idle and 20 under load (one producer connection per
    publishing pool thread). Its worker heartbeats stay: without them Flower could not see its steps."""
    from tasks import compute_worker
    from tasks.messaging.celery_app import celery
    argv: list = []
    saved = {k: celery.conf[k] for k in ("broker_pool_limit", "include")}
    monkeypatch.setattr(celery, "worker_main", argv.extend)
    try:
        celery.conf.broker_pool_limit = 10
        compute_worker.main([])
        assert "--without-mingle" in argv and "--without-gossip" in argv and "--without-heartbeat" not in argv
        assert celery.conf.broker_pool_limit == 1
    finally:
        celery.conf.update(saved)
