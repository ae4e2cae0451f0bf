"""Aggregate filters: flavor extra specs against aggregate metadata, tenant isolation, zones from aggregates."""
from __future__ import annotations

import pytest

from scheduler.aggregate_filters import (AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation,
                                         spec_matches)
from scheduler.filters import DEFAULT_FILTERS
from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import NoValidHost, select_destinations


def host(name: str, az: str = "nova", **metadata: str) -> HostState:
    return HostState(host=name, node_id=hash(name) % 1000, availability_zone=az, enabled=True, up=True, vcpus=8,
                     memory_mb=8192, local_gb=100,
                     aggregate_metadata={k: frozenset(v.split("|")) for k, v in metadata.items()})


def spec(extra_specs: dict | None = None, project_id: str = "p1", az: str | None = None) -> RequestSpec:
    return RequestSpec(instance_uuid="u", vcpus=1, memory_mb=64, root_gb=1, availability_zone=az,
                       project_id=project_id, extra_specs=extra_specs or {})


@pytest.mark.parametrize("value,requirement,ok", [
    ("ssd", "ssd", True), ("hdd", "ssd", False), ("4", "= 2", True), ("1", "= 2", False), ("2", "== 2", True),
    ("3", "!= 2", True), ("abc", "<in> b", True), ("abc", "<in> z", False), ("x", "<or> y <or> x", True),
    ("z", "<or> y <or> x", False), ("b", "s== b", True), ("b", "s> a", True), ("2", ">= 3", False),
])
def test_spec_operators(value, requirement, ok):
    assert spec_matches(value, requirement) is ok


def test_extra_specs_filter_matches_scoped_and_unscoped_keys_and_ignores_other_scopes():
    f = AggregateInstanceExtraSpecsFilter()
    ssd, plain = host("ssd", ssd="true"), host("plain")
    assert f.filter_all([ssd, plain], spec({"aggregate_instance_extra_specs:ssd": "true"})) == [ssd]
    assert f.filter_all([ssd, plain], spec({"ssd": "true"})) == [ssd]
    assert f.filter_all([ssd, plain], spec({"hw:cpu_policy": "dedicated"})) == [ssd, plain]
    assert f.filter_all([ssd, plain], spec({"aggregate_instance_extra_specs:ssd": "false"})) == []
    assert f.filter_all([ssd, plain], spec()) == [ssd, plain]
    # A host in two aggregates passes when any aggregate's value matches.
    both = host("both", ssd="false|true")
    assert f.host_passes(both, spec({"aggregate_instance_extra_specs:ssd": "true"}))


def test_multi_tenancy_isolation():
    f = AggregateMultiTenancyIsolation()
    reserved = host("reserved", filter_tenant_id="p2,p3")
    free = host("free")
    assert not f.host_passes(reserved, spec(project_id="p1"))
    assert f.host_passes(reserved, spec(project_id="p3"))
    assert f.host_passes(free, spec(project_id="p1"))
    # the bulk form the scheduler calls (hosts in no aggregate pass without a look at their metadata)
    other = host("other", ssd="true")
    assert f.filter_all([reserved, free, other], spec(project_id="p1")) == [free, other]
    assert f.filter_all([reserved, free, other], spec(project_id="p2")) == [reserved, free, other]


def test_default_filters_use_aggregate_metadata_and_zones():
    hosts = [host("a", az="zone-a", ssd="true"), host("b", az="zone-b")]
    chosen = select_destinations(hosts, spec({"aggregate_instance_extra_specs:ssd": "true"}), filters=DEFAULT_FILTERS)
    assert chosen.hosts == ["a"]
    assert select_destinations(hosts, spec(az="zone-b")).hosts == ["b"]
    with pytest.raises(NoValidHost, match="AggregateInstanceExtraSpecsFilter removed 1 of 1"):
        select_destinations(hosts, spec({"aggregate_instance_extra_specs:ssd": "true"}, az="zone-b"))
