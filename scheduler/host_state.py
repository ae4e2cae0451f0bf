"""What the scheduler knows about a compute host and about a request (plain data, no DB, no Celery)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class HostState:
    host: str
    node_id: int
    availability_zone: str
    enabled: bool
    up: bool
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int = 0
    memory_mb_used: int = 0
    local_gb_used: int = 0
    cpu_allocation_ratio: float = 1.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    running_vms: int = 0
    # capacity held back by the operator (Placement's inventory ``reserved``): free = (total - reserved) * ratio - used
    vcpus_reserved: int = 0
    memory_mb_reserved: int = 0
    local_gb_reserved: int = 0
    # metadata key -> values, over the host aggregates this host is in
    aggregate_metadata: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)

    @property
    def free_ram_mb(self) -> float:
        return (self.memory_mb - self.memory_mb_reserved) * self.ram_allocation_ratio - self.memory_mb_used

    @property
    def free_vcpus(self) -> float:
        return (self.vcpus - self.vcpus_reserved) * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_disk_gb(self) -> float:
        return (self.local_gb - self.local_gb_reserved) * self.disk_allocation_ratio - self.local_gb_used


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """The server group a request belongs to, as the group filters and weighers need it.

    ``member_hosts`` counts the group's *other* live members per host (members not yet placed are not counted).
    """
    uuid: str
    policy: str  # affinity | anti-affinity | soft-affinity | soft-anti-affinity
    max_server_per_host: int = 1  # anti-affinity rule
    member_hosts: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    instance_uuid: str
    vcpus: int
    memory_mb: int
    root_gb: int
    availability_zone: str | None = None
    ignore_hosts: frozenset[str] = frozenset()
    scheduler_hints: dict = dataclasses.field(default_factory=dict)
    group: GroupSpec | None = None
    project_id: str | None = None
    extra_specs: dict = dataclasses.field(default_factory=dict)  # the flavor's
    requested_host: str | None = None  # 2.74's host / hypervisor_hostname at create: only this host
