"""The conductor's dialect-sensitive writes on each real database: an action event whose action id is read inside
its INSERT, and a fixed-IP INSERT that skips a taken address without a SAVEPOINT (the transaction stays usable
after the conflict, which on PostgreSQL a failed INSERT would not allow)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bench.api_reads import app_on
from harness.stack import BACKENDS, _port_open

pytestmark = pytest.mark.services


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request, tmp_path):
    backend = next(b for b in BACKENDS.values() if b.database == request.param).own()
    port = {"postgresql": 5432, "mariadb": 3306}.get(request.param)
    if port and not _port_open(port):
        pytest.skip(f"SKIPPED LOUDLY: {request.param} is not running on 127.0.0.1:{port}")
    try:
        with app_on(backend.database_url(), tmp_path / "state"):
            yield request.param
    finally:
        backend.cleanup()


def test_record_event_finds_the_action_inside_its_insert(database):
    from core import db
    from core.models import InstanceAction, InstanceActionEvent
    from core.writes import instances
    with db.write_session() as s:
        instances.start_action(s, "inst-1", "create", "req-1", "u", "p")
        instances.record_event(s, "inst-1", "req-1", "compute__do_build_and_run_instance", None, "Error",
                               host="h1", traceback="Traceback ...", details="it broke")
        instances.record_event(s, "inst-1", "req-other", "never", None, "Success")  # no such action: no row
    with db.read_session() as s:
        action = s.scalars(select(InstanceAction)).one()
        event = s.scalars(select(InstanceActionEvent)).one()
        assert (event.action_id, event.event, event.result, event.host, event.traceback, event.details) == (
            action.id, "compute__do_build_and_run_instance", "Error", "h1", "Traceback ...", "it broke")
        assert event.start_time == event.finish_time == action.finish_time and action.message == "Error"
    with db.write_session() as s:
        instances.start_action(s, "inst-2", "stop", "req-2", "u", "p")
        instances.record_event(s, "inst-2", "req-2", "compute_stop_instance", 1_700_000_000.5, "Success",
                               finish_action=False)
    with db.read_session() as s:
        action = s.scalars(select(InstanceAction).where(InstanceAction.instance_uuid == "inst-2")).one()
        event = s.scalars(select(InstanceActionEvent).where(InstanceActionEvent.action_id == action.id)).one()
        assert action.finish_time is None and action.message is None
        assert event.start_time.year == 2023 and event.traceback is None
        assert event.host == __import__("socket").gethostname()  # the conductor's own, as Nova records it


def test_a_delete_event_finishes_the_other_open_actions_as_failed(database):
    """finish_delete's one UPDATE: its own action finished as it was, the instance's other unfinished actions
    finished with "Error", finished ones and other instances' left alone."""
    from core import db
    from core.models import InstanceAction, InstanceActionEvent
    from core.writes import instances
    with db.write_session() as s:
        for uuid, request_id, action in (("inst-1", "req-old", "stop"), ("inst-1", "req-open", "unshelve"),
                                         ("inst-1", "req-del", "delete"), ("inst-2", "req-x", "stop")):
            instances.start_action(s, uuid, action, request_id, "u", "p")
        instances.record_event(s, "inst-1", "req-old", "compute_stop_instance", None, "Success")
    from bench.api_reads import count_statements
    with db.write_session() as s, count_statements() as stmts:
        instances.record_event(s, "inst-1", "req-del", "compute_terminate_instance", None, "Success",
                               finish_open=True)
    # The event and the UPDATE: one statement on PostgreSQL (the INSERT takes the id the UPDATE returns).
    assert len([q for q in stmts if "instance_action" in q]) == (1 if database == "postgresql" else 2), stmts
    with db.read_session() as s:
        rows = {r.request_id: (r.finish_time is not None, r.message) for r in s.scalars(select(InstanceAction))}
    assert rows == {"req-old": (True, None), "req-open": (True, "Error"), "req-del": (True, None),
                    "req-x": (False, None)}
    with db.read_session() as s:
        events = s.execute(select(InstanceActionEvent.event, InstanceAction.request_id).join(
            InstanceAction, InstanceAction.id == InstanceActionEvent.action_id)).all()
    assert sorted(events) == [("compute_stop_instance", "req-old"), ("compute_terminate_instance", "req-del")]


def test_fixed_ip_skips_an_address_taken_in_the_same_transaction(database):
    from core import db, network
    from core.models import FixedIP
    from core.writes import networking
    with db.write_session() as s:
        first = networking.allocate_fixed_ip(s, "inst-1")
        info = network.builtin()
        # What a concurrent allocation does: the lowest free address is taken between the read and the INSERT.
        taken = {"network_id": info.id, "address": networking.lowest_free_address(info, {first}),
                 "mac": network.random_mac(), "instance_uuid": "inst-2", "tag": None}
        assert networking._insert_unless_taken(s, FixedIP.__table__, taken)
        assert not networking._insert_unless_taken(s, FixedIP.__table__, {**taken, "mac": network.random_mac(),
                                                                          "instance_uuid": "inst-3"})
        third = networking.allocate_fixed_ip(s, "inst-3", tag="nic1")  # the transaction is still usable
    with db.read_session() as s:
        rows = {r.instance_uuid: (r.address, r.tag) for r in s.scalars(select(FixedIP))}
        assert s.scalar(select(func.count()).select_from(FixedIP)) == 3
    assert rows == {"inst-1": (first, None), "inst-2": (taken["address"], None), "inst-3": (third, "nic1")}
    assert len({first, taken["address"], third}) == 3


def test_claim_allocates_only_what_still_fits(database):
    """The claim's conditional UPDATE and its allocation row (one statement on PostgreSQL, two elsewhere): a fit
    takes the resources and writes the allocation with the node's id; a misfit changes nothing."""
    import types

    from core import db
    from core.models import Allocation, ComputeNode, Service
    from core.writes import resources
    with db.write_session() as s:
        s.add(Service(host="h1", binary="nova-compute", topic="compute"))
        s.flush()
        s.add(ComputeNode(service_id=s.scalar(select(Service.id)), host="h1", hypervisor_hostname="h1",
                          hypervisor_type="fake", vcpus=2, memory_mb=1024, local_gb=10, cpu_allocation_ratio=1.0,
                          ram_allocation_ratio=1.0, disk_allocation_ratio=1.0))
    small = types.SimpleNamespace(uuid="inst-1", vcpus=2, memory_mb=512, root_gb=4)
    big = types.SimpleNamespace(uuid="inst-2", vcpus=1, memory_mb=600, root_gb=1)
    with db.write_session() as s:
        assert resources.claim(s, small, "h1") is True
        assert resources.claim(s, big, "h1") is False  # 512 + 600 MB > 1024 MB
        assert resources.claim(s, types.SimpleNamespace(uuid="inst-3", vcpus=1, memory_mb=1, root_gb=1),
                               "no-such-host") is False
    with db.read_session() as s:
        node = s.scalars(select(ComputeNode)).one()
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used, node.running_vms) == (2, 512, 4, 1)
        alloc = s.scalars(select(Allocation)).one()
        assert (alloc.instance_uuid, alloc.compute_node_id, alloc.vcpus, alloc.memory_mb, alloc.disk_gb) == (
            "inst-1", node.id, 2, 512, 4)
        assert alloc.created_at is not None
    with db.write_session() as s:  # the release's DELETE ... RETURNING gives the node's resources back, once
        assert resources.release_allocation(s, "inst-1") is True
        assert resources.release_allocation(s, "inst-1") is False
    with db.read_session() as s:
        node = s.scalars(select(ComputeNode)).one()
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used, node.running_vms) == (0, 0, 0, 0)
        assert s.scalar(select(func.count()).select_from(Allocation)) == 0


def test_compare_and_swap_shapes(database):
    """cas_instance's prebuilt UPDATEs, one per shape of call: an expected task_state that is one state, several
    with or without NULL, NULL alone, or not checked; expected vm_states; a JSON value set."""
    import uuid as uuidlib

    from core import db
    from core import states
    from core.models import Flavor, Instance
    from core.writes import instances
    with db.write_session() as s:
        s.add(Flavor(flavorid="42", name="m1.nano", memory_mb=128, root_gb=1, vcpus=1))
        s.flush()
        flavor_id = s.scalar(select(Flavor.id))

    def make(task_state: str | None, vm_state: str = states.ACTIVE) -> str:
        uid = str(uuidlib.uuid4())
        with db.write_session() as s:
            s.add(Instance(uuid=uid, display_name="x", hostname="x", project_id="p", user_id="u", image_ref="",
                           flavor_id=flavor_id, flavor_snapshot={}, vcpus=1, memory_mb=1, root_gb=1,
                           vm_state=vm_state, task_state=task_state, reservation_id="r-1", networks_request="none"))
        return uid

    def cas(uid: str, **kw) -> bool:
        with db.write_session() as s:
            return instances.cas_instance(s, uid, **kw)

    def row(uid: str) -> tuple:
        with db.read_session() as s:
            inst = s.scalars(select(Instance).where(Instance.uuid == uid)).one()
            return inst.task_state, inst.vm_state, inst.device_metadata

    a, b, c = make(states.SPAWNING), make(None), make(states.DELETING, vm_state=states.ERROR)
    assert not cas(a, expected_task_state=states.SCHEDULING, task_state=None)
    assert cas(a, expected_task_state=states.SPAWNING, task_state=None, device_metadata=[{"tag": "nic1"}])
    assert row(a) == (None, states.ACTIVE, [{"tag": "nic1"}])
    assert not cas(b, expected_task_state=(states.SPAWNING, states.DELETING), task_state=states.DELETING)
    assert cas(b, expected_task_state=(states.SPAWNING, None), task_state=states.DELETING)
    assert not cas(b, expected_task_state=None, task_state=None)  # it is deleting now
    assert cas(b, expected_task_state=[states.DELETING], task_state=None) and row(b)[0] is None
    assert not cas(c, expected_task_state=states.DELETING, expected_vm_states=(states.ACTIVE,), task_state=None)
    assert cas(c, expected_task_state=states.DELETING, expected_vm_states=(states.ACTIVE, states.ERROR),
               task_state=None, vm_state=states.DELETED)
    assert cas(c, vm_state=states.ERROR) and row(c)[:2] == (None, states.ERROR)  # task_state not checked
    assert not cas("no-such-instance", vm_state=states.ERROR)


def test_reads_hold_no_transaction_on_postgresql(database):
    """On PostgreSQL a read session runs in autocommit (no BEGIN/ROLLBACK round trips, nothing left 'idle in
    transaction' between its statements); elsewhere reads stay in a transaction (SQLite: one snapshot)."""
    from sqlalchemy import text

    from core import db
    with db.read_session() as s:
        s.execute(text("SELECT 1"))
        raw = s.connection().connection.dbapi_connection
        if database == "postgresql":
            assert raw.autocommit is True
            assert s.execute(text("SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()")).scalar() \
                == "active"
            assert s.execute(text("SELECT now() = statement_timestamp()")).scalar() is True  # no open transaction
        else:
            assert s.in_transaction()
    if database == "postgresql":  # switching in and out of autocommit sent nothing (no SET, no ROLLBACK)
        import psycopg
        monitor = psycopg.connect(db.get_engine().url.set(drivername="postgresql")
                                  .render_as_string(hide_password=False), autocommit=True)

        def last_query(pid: int) -> str:
            return monitor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
        try:
            for _ in range(2):
                with db.read_session() as s:
                    pid = s.execute(text("SELECT pg_backend_pid()")).scalar()
                assert last_query(pid) == "SELECT pg_backend_pid()"
        finally:
            monitor.close()
    with db.write_session() as s:  # writes keep their transaction
        s.execute(text("SELECT 1"))
        assert s.in_transaction()
        if database == "postgresql":
            assert s.connection().connection.dbapi_connection.autocommit is False
            assert s.execute(text("SELECT now() = statement_timestamp()")).scalar() is False


def test_a_fixed_ip_is_one_statement_on_postgresql(database, monkeypatch):
    """The allocation's lookup and INSERT are one statement on PostgreSQL (two elsewhere); when that INSERT finds
    nothing to take (here its random MAC is one in use: a conflict, as a concurrent allocation's would be), the
    window-by-window lookup still gives the lowest free address."""
    from bench.api_reads import count_statements
    from core import db, network
    from core.writes import networking
    with db.write_session() as s:
        first = networking.allocate_fixed_ip(s, "inst-0")  # the network's row is made on first use
        with count_statements() as stmts:
            second = networking.allocate_fixed_ip(s, "inst-1")
    assert len(stmts) == (1 if database == "postgresql" else 2), stmts
    info = network.builtin()
    pool = networking._pool_addresses(info.cidr, info.gateway)
    assert (first, second) == pool[:2]
    from core.models import FixedIP
    with db.read_session() as s:
        used_mac = s.scalar(select(FixedIP.mac).where(FixedIP.instance_uuid == "inst-1"))
    macs = iter([used_mac])
    monkeypatch.setattr(network, "random_mac", lambda: next(macs, "fa:16:3e:00:00:99"))
    with db.write_session() as s:
        assert networking.allocate_fixed_ip(s, "inst-2") == pool[2]
    with db.read_session() as s:
        assert s.scalar(select(FixedIP.mac).where(FixedIP.instance_uuid == "inst-2")) == "fa:16:3e:00:00:99"


def test_fixed_ips_come_from_the_low_water_mark(database, monkeypatch):
    """Addresses are handed out lowest first, window by window across the pool; one freed here is the next one
    given; one freed by another process is found after wrapping around; a full pool is a 409."""
    from sqlalchemy import delete

    from core import db, network, settings
    from core.errors import ConductorError
    from core.models import FixedIP
    from core.writes import networking
    monkeypatch.setenv("STRATUS_NETWORK_CIDR", "10.65.0.0/25")  # 125 guest addresses: two windows of 64
    settings.get_settings.cache_clear()
    try:
        info = network.builtin()
        pool = networking._pool_addresses(info.cidr, info.gateway)
        with db.write_session() as s:
            got = [networking.allocate_fixed_ip(s, f"inst-{i}") for i in range(70)]
        assert got == list(pool[:70])
        with db.write_session() as s:
            networking.release_fixed_ips(s, "inst-66")
            networking.release_fixed_ips(s, "inst-3")
        with db.write_session() as s:
            assert [networking.allocate_fixed_ip(s, f"again-{i}") for i in range(2)] == [pool[3], pool[66]]
            rest = [networking.allocate_fixed_ip(s, f"rest-{i}") for i in range(len(pool) - 70)]
        assert sorted(rest, key=pool.index) == list(pool[70:])
        with pytest.raises(ConductorError) as full, db.write_session() as s:
            networking.allocate_fixed_ip(s, "one-too-many")
        assert full.value.code == 409
        with db.write_session() as s:  # what another conductor process's delete does: this one is not told
            s.execute(delete(FixedIP).where(FixedIP.address == pool[10]))
        with db.write_session() as s:
            assert networking.allocate_fixed_ip(s, "after-wrap") == pool[10]
    finally:
        monkeypatch.undo()
        settings.get_settings.cache_clear()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_scheduler_refresh_takes_the_indexes_without_statistics(database):
    """The scheduler's per-decision read of changed hosts uses the updated_at indexes on a freshly registered
    cloud (no ANALYZE yet; autovacuum is off on CI's PostgreSQL): no scan of every host, no parallel workers."""
    import datetime as dt
    import uuid

    from sqlalchemy import insert
    from sqlalchemy.dialects import postgresql

    from core import db
    from core.models import ComputeNode, Service
    from tasks.host_cache import _CHANGED
    now = dt.datetime.utcnow()
    old = now - dt.timedelta(minutes=5)
    with db.write_session() as s:
        s.execute(insert(Service), [{"id": i, "uuid": str(uuid.uuid4()), "host": f"h{i}", "binary": "nova-compute",
                                     "topic": "compute", "last_seen_at": now, "updated_at": old}
                                    for i in range(1, 5001)])
        s.execute(insert(ComputeNode), [{"id": i, "uuid": str(uuid.uuid4()), "service_id": i, "host": f"h{i}",
                                         "hypervisor_hostname": f"h{i}", "hypervisor_type": "fake",
                                         "hypervisor_version": 1, "host_ip": "127.0.0.1", "vcpus": 16,
                                         "memory_mb": 32768, "local_gb": 512, "updated_at": old}
                                        for i in range(1, 5001)])
    compiled = _CHANGED.compile(dialect=postgresql.dialect())
    with db.read_session() as s:
        plan = "\n".join(r[0] for r in s.connection().exec_driver_sql(
            f"EXPLAIN {compiled}", {**compiled.params, "since": now - dt.timedelta(seconds=2)}))
    assert "Seq Scan on services" not in plan and "Gather" not in plan, plan
    assert "ix_compute_nodes_updated_at" in plan and "ix_services_updated_at" in plan, plan
