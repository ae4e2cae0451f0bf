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


DEFAULT_WEIGHERS: tuple[Weigher, ...] = (RAMWeigher(),)


def normalised_scores(hosts: list[HostState], spec: RequestSpec, weighers: tuple[Weigher, ...]) -> list[float]:
    scores = [0.0] * len(hosts)
    for w in weighers:
        raw = [w.weigh(h, spec) for h in hosts]
        lo, hi = min(raw), max(raw)
        span = hi - lo
        for i, value in enumerate(raw):
            scores[i] += w.multiplier * ((value - lo) / span if span else 0.0)
    return scores
