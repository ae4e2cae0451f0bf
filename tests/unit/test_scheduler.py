"""The scheduler is a pure function: filters, weighers, alternates and its explanations."""
from __future__ import annotations

import pytest

from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import NoValidHost, select_destinations


def host(name: str, ram: int = 4096, vcpus: int = 4, disk: int = 100, az: str = "nova", up: bool = True,
         enabled: bool = True, ram_used: int = 0) -> HostState:
    return HostState(host=name, node_id=hash(name) % 1000, availability_zone=az, enabled=enabled, up=up,
                     vcpus=vcpus, memory_mb=ram, local_gb=disk, memory_mb_used=ram_used)


def spec(ram: int = 512, vcpus: int = 1, disk: int = 1, az: str | None = None, ignore=()) -> RequestSpec:
    return RequestSpec(instance_uuid="u", vcpus=vcpus, memory_mb=ram, root_gb=disk, availability_zone=az,
                       ignore_hosts=frozenset(ignore))


def test_ram_weigher_spreads_and_alternates_follow():
    hosts = [host("a", ram_used=3000), host("b", ram_used=0), host("c", ram_used=1000)]
    sel = select_destinations(hosts, spec(), max_attempts=3)
    assert sel.hosts == ["b", "c", "a"]


def test_max_attempts_limits_alternates():
    hosts = [host(f"h{i}") for i in range(10)]
    assert len(select_destinations(hosts, spec(), max_attempts=3).hosts) == 3
    assert len(select_destinations(hosts, spec(), max_attempts=1).hosts) == 1


def test_no_valid_host_names_each_filter_and_count():
    hosts = [host("down", up=False), host("small1", ram=256), host("small2", ram=256), host("ok-but-az", az="x")]
    with pytest.raises(NoValidHost) as err:
        select_destinations(hosts, spec(ram=512, az="nova"))
    msg = str(err.value)
    assert msg.startswith("No valid host was found.")
    assert "ComputeFilter removed 1 of 4 hosts" in msg
    assert "AvailabilityZoneFilter removed 1 of 3 hosts" in msg
    assert "RamFilter removed 2 of 2 hosts" in msg


def test_ratios_and_other_resources():
    h = host("a", vcpus=2, disk=10)
    h.cpu_allocation_ratio = 4.0
    assert select_destinations([h], spec(vcpus=8)).hosts == ["a"]
    with pytest.raises(NoValidHost, match="CoreFilter removed 1 of 1 hosts"):
        select_destinations([h], spec(vcpus=9))
    with pytest.raises(NoValidHost, match="DiskFilter removed 1 of 1 hosts"):
        select_destinations([h], spec(disk=11))


def test_ignore_hosts_for_reschedules_and_empty_cloud():
    with pytest.raises(NoValidHost, match="IgnoreHostsFilter removed 1 of 1 hosts"):
        select_destinations([host("a")], spec(ignore=["a"]))
    with pytest.raises(NoValidHost, match="There are 0 compute hosts"):
        select_destinations([], spec())


def test_equal_weights_keep_the_candidate_order_so_boots_spread_over_workers(stratus_env):
    """Issue 25: with 10 workers x 1,000 empty hosts, every boot landed on the first worker's hosts, because equal
    weights were broken by host name. Ties now keep the order of the candidates (Nova's stable sort keeps
    Placement's order), and the scheduler's cache list is shuffled: the choices spread over the workers."""
    import random

    from scheduler.manager import select_destinations
    from tasks.scheduler import decide
    assert select_destinations([host("b"), host("a")], RequestSpec("u", 1, 512, 1)).hosts[0] == "b"
    hosts = [host(f"w{w}-h{i:04d}") for w in range(10) for i in range(200)]
    random.Random(25).shuffle(hosts)  # as HostStateCache shuffles at each full reload
    by_name = {h.host: h for h in hosts}
    workers = set()
    for n in range(100):
        chosen = by_name[decide(hosts, RequestSpec(f"u{n}", 1, 512, 1), 3).hosts[0]]
        chosen.memory_mb_used += 512  # consume, as schedule_with does
        workers.add(chosen.host.split("-")[0])
    assert len(workers) >= 8, workers
