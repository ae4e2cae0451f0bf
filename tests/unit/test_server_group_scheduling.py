"""Server-group filters and weighers (pure), and the group view the scheduler and the claim read from the DB."""
from __future__ import annotations

import pytest

from scheduler.filters import (ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter,
                               group_filter_rejecting)
from scheduler.host_state import GroupSpec, HostState, RequestSpec
from scheduler.manager import NoValidHost, select_destinations
from scheduler.weighers import (ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher,
                                default_weighers)


def host(name: str, ram_used: int = 0) -> HostState:
    return HostState(host=name, node_id=0, availability_zone="nova", enabled=True, up=True, vcpus=8,
                     memory_mb=8192, local_gb=100, memory_mb_used=ram_used)


def spec(policy: str | None, member_hosts: dict[str, int] | None = None, max_per_host: int = 1) -> RequestSpec:
    group = None if policy is None else GroupSpec(uuid="g", policy=policy, max_server_per_host=max_per_host,
                                                  member_hosts=member_hosts or {})
    return RequestSpec(instance_uuid="u", vcpus=1, memory_mb=512, root_gb=1, group=group)


HOSTS = ["a", "b", "c", "d"]


@pytest.mark.parametrize("f", [ServerGroupAffinityFilter(), ServerGroupAntiAffinityFilter()])
def test_group_filters_ignore_requests_outside_their_policy(f):
    for s in (spec(None), spec("soft-affinity", {"a": 2}), spec("soft-anti-affinity", {"a": 2})):
        hosts = [host(h) for h in HOSTS]
        assert f.filter_all(hosts, s) == hosts
        assert all(f.host_passes(h, s) for h in hosts)


def test_anti_affinity_filter_removes_hosts_holding_members_and_explains():
    hosts = [host(h) for h in HOSTS]
    s = spec("anti-affinity", {"a": 1, "c": 1})
    f = ServerGroupAntiAffinityFilter()
    assert [h.host for h in f.filter_all(hosts, s)] == ["b", "d"]
    assert [h.host for h in hosts if f.host_passes(h, s)] == ["b", "d"]
    assert select_destinations(hosts, s, max_attempts=4).hosts == ["b", "d"]
    with pytest.raises(NoValidHost, match="ServerGroupAntiAffinityFilter removed 4 of 4 hosts"):
        select_destinations(hosts, spec("anti-affinity", dict.fromkeys(HOSTS, 1)))


def test_anti_affinity_respects_max_server_per_host():
    hosts = [host("a"), host("b")]
    s = spec("anti-affinity", {"a": 2, "b": 1}, max_per_host=2)
    assert [h.host for h in ServerGroupAntiAffinityFilter().filter_all(hosts, s)] == ["b"]
    assert group_filter_rejecting(s.group, "a") == "ServerGroupAntiAffinityFilter"
    assert group_filter_rejecting(s.group, "b") is None


def test_affinity_filter_keeps_only_member_hosts_once_one_is_placed():
    hosts = [host(h) for h in HOSTS]
    f = ServerGroupAffinityFilter()
    assert f.filter_all(hosts, spec("affinity")) == hosts  # the first member may go anywhere
    s = spec("affinity", {"c": 2})
    assert [h.host for h in f.filter_all(hosts, s)] == ["c"]
    assert [h.host for h in hosts if f.host_passes(h, s)] == ["c"]
    # Even when the RAM weigher prefers emptier hosts, the member host is the only choice.
    hosts[2].memory_mb_used = 6000
    assert select_destinations(hosts, s).hosts == ["c"]
    with pytest.raises(NoValidHost, match="ServerGroupAffinityFilter removed 3 of 3 hosts"):
        select_destinations([host("a"), host("b"), host("d")], s)
    assert group_filter_rejecting(s.group, "a") == "ServerGroupAffinityFilter"
    assert group_filter_rejecting(s.group, "c") is None


def test_soft_weighers_count_members_and_stay_neutral_otherwise():
    hosts = [host(h) for h in HOSTS]
    s = spec("soft-affinity", {"b": 2, "d": 1})
    assert ServerGroupSoftAffinityWeigher().weigh_all(hosts, s) == [0, 2, 0, 1]
    assert [ServerGroupSoftAffinityWeigher().weigh(h, s) for h in hosts] == [0, 2, 0, 1]
    assert ServerGroupSoftAntiAffinityWeigher().weigh_all(hosts, s) == [0.0] * 4  # other policy
    anti = spec("soft-anti-affinity", {"b": 2, "d": 1})
    assert ServerGroupSoftAntiAffinityWeigher().weigh_all(hosts, anti) == [0, -2, 0, -1]
    assert ServerGroupSoftAffinityWeigher().weigh_all(hosts, anti) == [0.0] * 4


def test_soft_affinity_prefers_member_hosts_when_weighted_above_ram():
    hosts = [host("a"), host("b", ram_used=512)]
    s = spec("soft-affinity", {"b": 1})
    # Equal multipliers: normalised RAM (a=1, b=0) and affinity (a=0, b=1) cancel; the tie goes by host name.
    assert select_destinations(hosts, s, weighers=default_weighers(1.0, 1.0)).hosts[0] == "a"
    assert select_destinations(hosts, s, weighers=default_weighers(2.0, 1.0)).hosts == ["b", "a"]
    # Soft policies never filter: a full spread still finds a host.
    assert select_destinations(hosts, spec("soft-affinity", {"a": 5, "b": 5})).hosts


def test_soft_anti_affinity_prefers_hosts_without_members():
    hosts = [host("a"), host("b"), host("c")]
    s = spec("soft-anti-affinity", {"a": 1, "b": 3})
    assert select_destinations(hosts, s, weighers=default_weighers(1.0, 1.0)).hosts == ["c", "a", "b"]
    assert select_destinations(hosts, spec("soft-anti-affinity", dict.fromkeys("abc", 1))).hosts


def test_group_spec_counts_other_live_placed_members(stratus_env):
    """What the scheduler and the claim read: members on each host, without this instance, deleted or unplaced."""
    from core import db
    from core.models import Flavor, Instance, InstanceGroup, InstanceGroupMember
    from tasks.groups import group_spec

    with db.write_session() as s:
        flavor = Flavor(flavorid="1", name="f", vcpus=1, memory_mb=64, root_gb=1)
        group = InstanceGroup(name="g", project_id="p", user_id="u", policy="anti-affinity",
                              rules={"max_server_per_host": 2})
        s.add_all([flavor, group])
        s.flush()
        placed = [("me", "h1", 0), ("x", "h1", 0), ("y", "h1", 0), ("z", "h2", 0), ("gone", "h2", 99),
                  ("unplaced", None, 0)]
        for uuid, host_name, deleted in placed:
            s.add(Instance(uuid=uuid, display_name=uuid, hostname=uuid, project_id="p", user_id="u", image_ref="i",
                           flavor_id=flavor.id, flavor_snapshot={}, vcpus=1, memory_mb=64, root_gb=1,
                           vm_state="active", host=host_name, reservation_id="r", deleted=deleted,
                           networks_request="none"))
            s.add(InstanceGroupMember(group_id=group.id, instance_uuid=uuid, user_id="u"))
        s.add(Instance(uuid="loner", display_name="l", hostname="l", project_id="p", user_id="u", image_ref="i",
                       flavor_id=flavor.id, flavor_snapshot={}, vcpus=1, memory_mb=64, root_gb=1, vm_state="active",
                       host="h3", reservation_id="r", networks_request="none"))
        group_uuid = group.uuid
    with db.write_session() as s:
        got = group_spec(s, "me", lock=True)
        assert got == GroupSpec(uuid=group_uuid, policy="anti-affinity", max_server_per_host=2,
                                member_hosts={"h1": 2, "h2": 1})
        assert group_filter_rejecting(got, "h1") == "ServerGroupAntiAffinityFilter"
        assert group_filter_rejecting(got, "h2") is None
        assert group_spec(s, "loner") is None
