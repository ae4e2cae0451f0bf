"""Host filters: each keeps the hosts that can take the request (nova/scheduler/filters is the model)."""
from __future__ import annotations

from typing import Protocol

from scheduler.host_state import HostState, RequestSpec


class HostFilter(Protocol):
    name: str

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool: ...


class ComputeFilter:
    """Hosts whose compute service is enabled and up."""
    name = "ComputeFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.enabled and host.up


class IgnoreHostsFilter:
    """Hosts already tried for this request (a reschedule) or excluded by the caller."""
    name = "IgnoreHostsFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.host not in spec.ignore_hosts


class AvailabilityZoneFilter:
    name = "AvailabilityZoneFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return spec.availability_zone is None or host.availability_zone == spec.availability_zone


class RamFilter:
    name = "RamFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.free_ram_mb >= spec.memory_mb


class CoreFilter:
    name = "CoreFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.free_vcpus >= spec.vcpus


class DiskFilter:
    name = "DiskFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.free_disk_gb >= spec.root_gb


DEFAULT_FILTERS: tuple[HostFilter, ...] = (ComputeFilter(), IgnoreHostsFilter(), AvailabilityZoneFilter(),
                                           RamFilter(), CoreFilter(), DiskFilter())
