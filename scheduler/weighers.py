"""Weighers rank the hosts that passed the filters; higher is better (nova's weights, normalised 0..1)."""
from __future__ import annotations

import functools
from typing import Protocol

from scheduler.host_state import HostState, RequestSpec


class Weigher(Protocol):
    name: str
    multiplier: float

    def weigh(self, host: HostState, spec: RequestSpec) -> float: ...


class RAMWeigher:
    """Spread: prefer hosts with the most free RAM (a negative multiplier stacks instead)."""
    name = "RAMWeigher"

    def __init__(self, multiplier: float = 1.0):
        self.multiplier = multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_ram_mb

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [(h.memory_mb - h.memory_mb_reserved) * h.ram_allocation_ratio - h.memory_mb_used for h in hosts]


class _GroupMembersWeigher:
    """Weight = the number of the group's other members on the host, for groups of ``policy`` only."""
    policy = ""
    sign = 1.0

    def __init__(self, multiplier: float = 1.0):
        self.multiplier = multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        group = spec.group
        if group is None or group.policy != self.policy:
            return 0.0
        return self.sign * group.member_hosts.get(host.host, 0)

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        group = spec.group
        if group is None or group.policy != self.policy or not group.member_hosts:
            return [0.0] * len(hosts)
        on, sign = group.member_hosts, self.sign
        return [sign * on.get(h.host, 0) for h in hosts]


class ServerGroupSoftAffinityWeigher(_GroupMembersWeigher):
    """soft-affinity: prefer the hosts with the most members of the group."""
    name = "ServerGroupSoftAffinityWeigher"
    policy = "soft-affinity"


class ServerGroupSoftAntiAffinityWeigher(_GroupMembersWeigher):
    """soft-anti-affinity: prefer the hosts with the fewest members of the group."""
    name = "ServerGroupSoftAntiAffinityWeigher"
    policy = "soft-anti-affinity"
    sign = -1.0


@functools.lru_cache(maxsize=16)
def default_weighers(soft_affinity: float = 1.0, soft_anti_affinity: float = 1.0,
                     ram: float = 1.0) -> tuple[Weigher, ...]:
    """The weighers with these multipliers (stateless: one tuple per configuration, shared by decisions)."""
    return (RAMWeigher(ram), ServerGroupSoftAffinityWeigher(soft_affinity),
            ServerGroupSoftAntiAffinityWeigher(soft_anti_affinity))


DEFAULT_WEIGHERS: tuple[Weigher, ...] = default_weighers()


def normalised_scores(hosts: list[HostState], spec: RequestSpec, weighers: tuple[Weigher, ...]) -> list[float]:
    scores = [0.0] * len(hosts)
    for w in weighers:
        bulk = getattr(w, "weigh_all", None)  # optional: one list comprehension, as filter_all
        raw = bulk(hosts, spec) if bulk is not None else [w.weigh(h, spec) for h in hosts]
        lo, hi = min(raw), max(raw)
        span = hi - lo
        if not span:
            continue
        m = w.multiplier / span
        scores = [s + m * (value - lo) for s, value in zip(scores, raw)]
    return scores
