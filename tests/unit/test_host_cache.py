"""The scheduler's host-state cache sees every write that matters at the next decision, and the sampled decision
never reports NoValidHost while some host fits."""
from __future__ import annotations

import types

import pytest

from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import NoValidHost

RESOURCES = {"hypervisor_hostname": "", "hypervisor_type": "fake", "hypervisor_version": 1, "vcpus": 16,
             "memory_mb": 32768, "local_gb": 512, "host_ip": "127.0.0.1"}


@pytest.fixture
def hosts(stratus_env):
    from core.db import write_session
    from core.writes import resources
    with write_session() as s:
        for name in ("cache-a", "cache-b"):
            resources.report_service(s, name, {**RESOURCES, "hypervisor_hostname": name})
    return ("cache-a", "cache-b")


def _states(cache) -> dict[str, HostState]:
    from core.db import read_session
    with read_session() as s:
        return {h.host: h for h in cache.states(s)}


def test_refresh_sees_claims_releases_and_service_changes(hosts):
    from core.db import read_session, write_session
    from core.models import Service
    from sqlalchemy import select
    from core.writes import resources
    from tasks.host_cache import HostStateCache

    cache = HostStateCache(full_reload_s=3600)  # only incremental refreshes after the first load
    first = _states(cache)
    assert first["cache-a"].memory_mb_used == 0 and first["cache-a"].enabled

    inst = types.SimpleNamespace(uuid="11111111-1111-1111-1111-111111111111", vcpus=2, memory_mb=2048, root_gb=10)
    with write_session() as s:
        assert resources.claim(s, inst, "cache-a")
    seen = _states(cache)["cache-a"]
    assert (seen.vcpus_used, seen.memory_mb_used, seen.local_gb_used, seen.running_vms) == (2, 2048, 10, 1)

    with write_session() as s:
        assert resources.release_allocation(s, inst.uuid)
    assert _states(cache)["cache-a"].memory_mb_used == 0

    with read_session() as s:
        svc_uuid = s.scalar(select(Service.uuid).where(Service.host == "cache-b"))
    with write_session() as s:
        resources.update_service(s, svc_uuid, {"status": "disabled"})
    assert not _states(cache)["cache-b"].enabled

    with write_session() as s:  # a new compute host registers
        resources.report_service(s, "cache-c", {**RESOURCES, "hypervisor_hostname": "cache-c"})
    assert set(_states(cache)) == {"cache-a", "cache-b", "cache-c"}


def test_decisions_spread_before_claims_commit(hosts):
    from core.db import read_session
    from tasks.host_cache import HostStateCache
    from tasks.scheduler import schedule_with

    cache = HostStateCache(full_reload_s=3600)
    spec = RequestSpec(instance_uuid="x", vcpus=1, memory_mb=4096, root_gb=1)
    with read_session() as s:
        chosen = [schedule_with(cache, s, spec, 1).hosts[0] for _ in range(2)]
    assert sorted(chosen) == ["cache-a", "cache-b"]  # the first choice consumed RAM in the cache


def test_decisions_of_two_scheduler_threads_take_turns(hosts, monkeypatch):
    """The Procfile runs the scheduler with two threads: a decision must not start before the previous one has
    consumed its host, or both could pick the same host from the same cached state."""
    import threading

    from core.db import read_session
    from tasks import scheduler
    from tasks.host_cache import HostStateCache

    cache = HostStateCache(full_reload_s=3600)
    spec = RequestSpec(instance_uuid="x", vcpus=1, memory_mb=4096, root_gb=1)
    inside, release, overlapped = threading.Event(), threading.Event(), []
    real_decide = scheduler.decide

    def slow_decide(*args, **kwargs):
        overlapped.append(inside.is_set())
        inside.set()
        release.wait(5)
        try:
            return real_decide(*args, **kwargs)
        finally:
            inside.clear()

    monkeypatch.setattr(scheduler, "decide", slow_decide)
    chosen: list[str] = []

    def decide_once() -> None:
        with read_session() as s:
            chosen.append(scheduler.schedule_with(cache, s, spec, 1).hosts[0])

    threads = [threading.Thread(target=decide_once) for _ in range(2)]
    for t in threads:
        t.start()
    assert inside.wait(5)
    threads[1].join(0.3)  # the second thread gets time to enter decide if nothing stops it
    release.set()
    for t in threads:
        t.join(10)
    assert overlapped == [False, False]
    assert sorted(chosen) == ["cache-a", "cache-b"]


def _host(i: int, free_ram: int) -> HostState:
    return HostState(host=f"h{i:05d}", node_id=i, availability_zone="nova", enabled=True, up=True, vcpus=16,
                     memory_mb=free_ram, local_gb=100)


def test_sampled_decision_falls_back_to_all_hosts():
    from tasks.host_cache import MAX_CANDIDATES
    from tasks.scheduler import decide

    many = [_host(i, 512) for i in range(MAX_CANDIDATES * 3)]
    many[1234] = _host(1234, 8192)  # the only host with room, most likely outside the sample
    spec = RequestSpec(instance_uuid="x", vcpus=1, memory_mb=4096, root_gb=1)
    assert decide(many, spec, 3).hosts == ["h01234"]
    with pytest.raises(NoValidHost, match="RamFilter removed"):
        decide(many[:1234] + many[1235:], spec, 3)


def test_small_clouds_are_not_sampled():
    from tasks.scheduler import decide
    few = [_host(i, 1024 * (i + 1)) for i in range(20)]
    spec = RequestSpec(instance_uuid="x", vcpus=1, memory_mb=512, root_gb=1)
    assert decide(few, spec, 3).hosts == ["h00019", "h00018", "h00017"]  # the global best, in order


@pytest.mark.parametrize("cidr,used,expected", [
    ("10.0.0.0/24", set(), "10.0.0.2"),  # .1 is the gateway
    ("10.0.0.0/24", {"10.0.0.2", "10.0.0.3", "10.0.0.5"}, "10.0.0.4"),
    ("10.64.0.0/16", {f"10.64.0.{i}" for i in range(2, 255)}, "10.64.0.255"),  # numeric, not string, order
    ("10.0.0.0/30", {"10.0.0.2"}, None),
    ("10.64.0.0/15", {"10.64.0.2", "10.64.0.3"}, "10.64.0.4"),  # above the cached-list size: the integer walk
])
def test_lowest_free_address_matches_the_pool_order(cidr, used, expected):
    from core import network
    from core.writes.networking import lowest_free_address
    net = network.NetworkInfo(id="n", name="n", cidr=cidr, gateway=cidr.rsplit(".", 1)[0] + ".1",
                              netmask="", prefixlen=0, broadcast="", bridge="b")
    assert lowest_free_address(net, used) == expected
    assert expected == next((a for a in net.pool() if a not in used), None)


def test_candidates_are_a_window_that_wraps_and_covers_every_host():
    from tasks.host_cache import candidates
    hosts = [_host(i, 512) for i in range(10)]
    assert candidates(hosts, 10) is hosts
    seen = set()
    for _ in range(300):
        window = candidates(hosts, 4)
        names = [h.host for h in window]
        assert len(set(names)) == 4
        first = hosts.index(window[0])
        assert window == [hosts[(first + k) % 10] for k in range(4)]
        seen.update(names)
    assert seen == {h.host for h in hosts}


def test_a_full_reload_keeps_each_hosts_version_with_its_own_row(stratus_env):
    """The full reload shuffles the states: each row's version must still be kept under its own host, or a
    refresh would take unchanged rows for changed ones (and drop what the process consumed) and the reverse."""
    from core.db import read_session, write_session
    from core.writes import resources
    from tasks.host_cache import _QUERY, HostStateCache, _version
    with write_session() as s:
        for i in range(30):
            resources.report_service(s, f"shuffled-{i}", {**RESOURCES, "hypervisor_hostname": f"shuffled-{i}",
                                                          "memory_mb": 1024 * (i + 1)})
    cache = HostStateCache(full_reload_s=3600)
    states = _states(cache)
    with read_session() as s:
        rows = s.execute(_QUERY).all()
    assert cache._versions == {r[0]: _version(r) for r in rows}
    assert all(states[r[0]].memory_mb == r[7] for r in rows)  # r[7]: memory_mb


def test_a_refresh_reads_while_the_other_thread_decides(hosts, monkeypatch):
    """The database read of one thread's refresh does not wait for the other thread's decision (nor the reverse):
    the decision lock covers filter, weigh and consume and the in-memory apply, never a round trip."""
    import threading

    from core.db import read_session
    from tasks import host_cache, scheduler
    from tasks.host_cache import HostStateCache

    cache = HostStateCache(full_reload_s=3600)
    _states(cache)  # the full load
    deciding, release, read_during_decision = threading.Event(), threading.Event(), []
    real_decide, real_rows = scheduler.decide, host_cache.plain_rows

    def slow_decide(*args, **kwargs):
        deciding.set()
        release.wait(5)
        return real_decide(*args, **kwargs)

    def rows(*args, **kwargs):
        read_during_decision.append(deciding.is_set() and not release.is_set())
        return real_rows(*args, **kwargs)

    monkeypatch.setattr(scheduler, "decide", slow_decide)
    monkeypatch.setattr(host_cache, "plain_rows", rows)
    spec = RequestSpec(instance_uuid="x", vcpus=1, memory_mb=4096, root_gb=1)

    def decide_once() -> None:
        with read_session() as s:
            scheduler.schedule_with(cache, s, spec, 1)

    first = threading.Thread(target=decide_once)
    first.start()
    assert deciding.wait(5)
    second = threading.Thread(target=lambda: _states(cache))
    second.start()
    second.join(2)  # a read that must wait for the first decision is still blocked here
    release.set()
    first.join(10)
    second.join(10)
    assert read_during_decision[-1] is True


def test_refresh_sees_aggregate_changes_with_the_changed_rows(hosts):
    """The changed rows carry their hosts' aggregate metadata (several keys and values per host): a host added to
    an aggregate gets its zone and metadata at the next decision, and keeps them through a claim."""
    from core.db import write_session
    from core.writes import resources
    from tasks.conductor import admin
    from tasks.host_cache import HostStateCache

    cache = HostStateCache(full_reload_s=3600)
    assert _states(cache)["cache-a"].aggregate_metadata == {}
    agg = admin.create_aggregate("fast", "az-fast")["ok"]  # the conductor's calls, each its own transaction
    admin.set_aggregate_metadata(agg, {"ssd": "true", "filter_tenant_id": "p1"})
    other = admin.create_aggregate("tenants", None)["ok"]
    admin.set_aggregate_metadata(other, {"filter_tenant_id": "p2"})
    assert _states(cache)["cache-a"].aggregate_metadata == {}  # no host in them yet
    admin.aggregate_add_host(agg, "cache-a")
    admin.aggregate_add_host(other, "cache-a")
    want = {"availability_zone": frozenset({"az-fast"}), "ssd": frozenset({"true"}),
            "filter_tenant_id": frozenset({"p1", "p2"})}
    seen = _states(cache)
    assert (seen["cache-a"].availability_zone, seen["cache-a"].aggregate_metadata) == ("az-fast", want)
    assert (seen["cache-b"].availability_zone, seen["cache-b"].aggregate_metadata) == ("nova", {})
    inst = types.SimpleNamespace(uuid="22222222-2222-2222-2222-222222222222", vcpus=1, memory_mb=512, root_gb=1)
    with write_session() as s:
        assert resources.claim(s, inst, "cache-a")
    after = _states(cache)["cache-a"]
    assert (after.memory_mb_used, after.availability_zone, after.aggregate_metadata) == (512, "az-fast", want)


def test_a_host_back_up_is_up_at_the_first_decision_after_an_idle_spell(hosts, monkeypatch):
    """Heartbeats move only ``services.last_seen_at``, which the full reload reads: the first decision after the
    reload is due reads it itself, so a host that came back while the scheduler was idle is up at once (a reload
    started beside that decision would leave it down for it)."""
    import datetime as dt
    import time

    from sqlalchemy import update

    from core.db import write_session
    from core.models import ComputeNode, Service, utcnow
    from tasks.host_cache import HostStateCache

    def seen(at: dt.datetime) -> None:  # the rows' last changes long past: only last_seen_at tells
        past = utcnow() - dt.timedelta(hours=1)
        with write_session() as s:
            s.execute(update(Service).where(Service.host == "cache-b").values(last_seen_at=at, updated_at=past))
            s.execute(update(ComputeNode).where(ComputeNode.host == "cache-b").values(updated_at=past))

    from tasks import host_cache
    read_metadata = host_cache.aggregate_metadata_by_host

    def slow_full_read(*args, **kwargs):  # a full reload takes a while (100 ms and more at 10,000 hosts)
        time.sleep(0.5)
        return read_metadata(*args, **kwargs)

    cache = HostStateCache(full_reload_s=0.2)
    seen(utcnow() - dt.timedelta(days=1))
    assert not _states(cache)["cache-b"].up
    seen(utcnow())  # its heartbeat: no updated_at moves
    monkeypatch.setattr(host_cache, "aggregate_metadata_by_host", slow_full_read)
    time.sleep(0.3)
    assert _states(cache)["cache-b"].up
