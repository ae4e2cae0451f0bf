"""Property tests of the scheduler and the conductor's claim: random fleets, flavors and request sequences.

Invariants: a chosen host (or alternate) always fits the request within capacity x allocation ratio; usage never
exceeds capacity x ratio after any sequence of claims; NoValidHost happens exactly when no host fits, and its
explanation accounts for every host, filter by filter.
"""
from __future__ import annotations

import re
import types
import uuid

from hypothesis import HealthCheck, given, settings, strategies as st

from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import NoValidHost, select_destinations

RATIOS = st.sampled_from([0.5, 1.0, 1.5, 2.0, 4.0, 16.0])
AZS = st.sampled_from(["nova", "az2"])
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def fleets(draw, used: bool = True) -> list[HostState]:
    hosts = []
    for i in range(draw(st.integers(min_value=0, max_value=12))):
        vcpus, ram, disk = (draw(st.integers(1, 64)), draw(st.integers(256, 65536)), draw(st.integers(0, 2000)))
        cpu_r, ram_r, disk_r = draw(RATIOS), draw(RATIOS), draw(RATIOS)
        # Usage may already exceed capacity (the ratio was lowered after placement): such hosts must not be chosen.
        hosts.append(HostState(
            host=f"h{i}", node_id=i, availability_zone=draw(AZS), enabled=draw(st.booleans() | st.just(True)),
            up=draw(st.booleans() | st.just(True)), vcpus=vcpus, memory_mb=ram, local_gb=disk,
            vcpus_used=draw(st.integers(0, int(vcpus * cpu_r * 1.2))) if used else 0,
            memory_mb_used=draw(st.integers(0, int(ram * ram_r * 1.2))) if used else 0,
            local_gb_used=draw(st.integers(0, int(disk * disk_r * 1.2))) if used else 0,
            cpu_allocation_ratio=cpu_r, ram_allocation_ratio=ram_r, disk_allocation_ratio=disk_r))
    return hosts


@st.composite
def specs(draw, n_hosts: int = 12) -> RequestSpec:
    return RequestSpec(instance_uuid=str(uuid.uuid4()), vcpus=draw(st.integers(1, 32)),
                       memory_mb=draw(st.integers(64, 32768)), root_gb=draw(st.integers(0, 500)),
                       availability_zone=draw(st.none() | AZS),
                       ignore_hosts=frozenset(draw(st.sets(st.sampled_from([f"h{i}" for i in range(n_hosts)]),
                                                           max_size=3))))


def fits(h: HostState, spec: RequestSpec) -> bool:
    """The claim's own rule (core.writes.resources.claim), written independently of the filters."""
    return (h.enabled and h.up and h.host not in spec.ignore_hosts
            and spec.availability_zone in (None, h.availability_zone)
            and h.vcpus_used + spec.vcpus <= h.vcpus * h.cpu_allocation_ratio
            and h.memory_mb_used + spec.memory_mb <= h.memory_mb * h.ram_allocation_ratio
            and h.local_gb_used + spec.root_gb <= h.local_gb * h.disk_allocation_ratio)


def assert_explanation_accounts_for_every_host(reason: str, n_hosts: int) -> None:
    steps = [(name, int(removed), int(before))
             for name, removed, before in re.findall(r"(\w+) removed (\d+) of (\d+) hosts", reason)]
    assert steps, reason
    remaining = n_hosts
    for name, removed, before in steps:
        assert before == remaining and 0 < removed <= before, (reason, name)
        remaining -= removed
    assert remaining == 0, reason


@PROPS
@given(hosts=fleets(), spec=specs(), attempts=st.integers(1, 5))
def test_every_selected_host_fits_and_no_valid_host_means_none_fits(hosts, spec, attempts):
    fitting = [h for h in hosts if fits(h, spec)]
    try:
        sel = select_destinations(hosts, spec, max_attempts=attempts)
    except NoValidHost as exc:
        assert not fitting, f"{[h.host for h in fitting]} fit but: {exc}"
        if hosts:
            assert_explanation_accounts_for_every_host(exc.reason, len(hosts))
        else:
            assert exc.reason == "There are 0 compute hosts."
        return
    by_name = {h.host: h for h in hosts}
    assert sel.hosts and len(set(sel.hosts)) == len(sel.hosts) == min(attempts, len(fitting))
    assert all(fits(by_name[name], spec) for name in sel.hosts)
    # The RAM weigher spreads: the chosen host has the most free RAM of those that fit.
    assert by_name[sel.hosts[0]].free_ram_mb == max(h.free_ram_mb for h in fitting)
    assert sel.explanation.startswith(f"{len(fitting)} of {len(hosts)} hosts passed the filters")


@PROPS
@given(hosts=fleets(used=False), flavors=st.lists(specs(), min_size=1, max_size=40))
def test_usage_never_exceeds_capacity_after_a_sequence_of_claims(hosts, flavors):
    """Schedule then claim (first host that still fits, as the conductor walks the alternates), repeatedly."""
    for spec in flavors:
        try:
            sel = select_destinations(hosts, spec, max_attempts=3)
        except NoValidHost:
            assert not any(fits(h, spec) for h in hosts)
            continue
        by_name = {h.host: h for h in hosts}
        target = next(by_name[n] for n in sel.hosts if fits(by_name[n], spec))
        target.vcpus_used += spec.vcpus
        target.memory_mb_used += spec.memory_mb
        target.local_gb_used += spec.root_gb
        for h in hosts:
            assert h.vcpus_used <= h.vcpus * h.cpu_allocation_ratio
            assert h.memory_mb_used <= h.memory_mb * h.ram_allocation_ratio
            assert h.local_gb_used <= h.local_gb * h.disk_allocation_ratio


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=fleets(used=False), flavors=st.lists(specs(), min_size=1, max_size=25))
def test_database_claims_never_overcommit(hosts, flavors):
    """The conductor's conditional-UPDATE claim on a real (SQLite) database, fed by the scheduler."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from core.models import Base, ComputeNode, Service
    from core.writes.resources import claim

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        for h in hosts:
            svc = Service(host=h.host, binary="nova-compute", topic="compute")
            s.add(svc)
            s.flush()
            s.add(ComputeNode(service_id=svc.id, host=h.host, hypervisor_hostname=h.host, hypervisor_type="fake",
                              availability_zone=h.availability_zone, vcpus=h.vcpus, memory_mb=h.memory_mb,
                              local_gb=h.local_gb, cpu_allocation_ratio=h.cpu_allocation_ratio,
                              ram_allocation_ratio=h.ram_allocation_ratio,
                              disk_allocation_ratio=h.disk_allocation_ratio))
        s.commit()
        for spec in flavors:
            nodes = {n.host: n for n in s.scalars(select(ComputeNode))}
            for h in hosts:  # the scheduler sees the database's usage
                n = nodes[h.host]
                h.vcpus_used, h.memory_mb_used, h.local_gb_used = n.vcpus_used, n.memory_mb_used, n.local_gb_used
            try:
                chosen = select_destinations(hosts, spec, max_attempts=3).hosts
            except NoValidHost:
                continue
            instance = types.SimpleNamespace(uuid=str(uuid.uuid4()), vcpus=spec.vcpus, memory_mb=spec.memory_mb,
                                             root_gb=spec.root_gb)
            assert any(claim(s, instance, name) for name in chosen), "a selected host refused the claim"
            s.commit()
            s.expire_all()
        for n in s.scalars(select(ComputeNode)):
            assert n.vcpus_used <= n.vcpus * n.cpu_allocation_ratio
            assert n.memory_mb_used <= n.memory_mb * n.ram_allocation_ratio
            assert n.local_gb_used <= n.local_gb * n.disk_allocation_ratio
    engine.dispose()
