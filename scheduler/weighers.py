"""Weighers rank the hosts that passed the filters; higher is better (nova's weights, normalised 0..1)."""
from __future__ import annotations

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
        return [h.memory_mb * h.ram_allocation_ratio - h.memory_mb_used for h in hosts]


DEFAULT_WEIGHERS: tuple[Weigher, ...] = (RAMWeigher(),)


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
