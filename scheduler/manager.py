"""select_destinations: filters, then weighers, then the chosen host plus alternates.

A pure function over in-memory host states. When nothing fits, NoValidHost explains, per filter, how many
hosts it removed ("RamFilter removed 37 of 40 hosts"), so a user reading the fault knows why.
"""
from __future__ import annotations

import dataclasses
import heapq

from scheduler.filters import DEFAULT_FILTERS, HostFilter
from scheduler.host_state import HostState, RequestSpec
from scheduler.weighers import DEFAULT_WEIGHERS, Weigher, normalised_scores


class NoValidHost(Exception):
    def __init__(self, reason: str):
        super().__init__(f"No valid host was found. {reason}")
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Selection:
    hosts: list[str]  # chosen host first, then alternates in preference order
    explanation: str


# When nothing passes, a filter that removed at most this many hosts names them ("RamFilter removed 1 of 1 hosts
# (fake-1)"): an operator who exhausted one provider's inventory reads which one.
NAME_HOSTS_UP_TO = 5


def filter_hosts(hosts: list[HostState], spec: RequestSpec,
                 filters: tuple[HostFilter, ...]) -> tuple[list[HostState], list[str]]:
    remaining = hosts
    stages: list[tuple[str, list[HostState], list[HostState]]] = []  # (filter, before, after) where some left
    for f in filters:
        before = remaining
        bulk = getattr(f, "filter_all", None)
        if bulk is not None:
            remaining = bulk(remaining, spec)
        else:
            passes = f.host_passes
            remaining = [h for h in remaining if passes(h, spec)]
        if len(remaining) < len(before):
            stages.append((f.name, before, remaining))
        if not remaining:
            break
    removed = []
    for name, before, after in stages:
        text = f"{name} removed {len(before) - len(after)} of {len(before)} hosts"
        if not remaining and len(before) - len(after) <= NAME_HOSTS_UP_TO:  # the failure path only: O(hosts)
            kept = {id(h) for h in after}
            text += f" ({', '.join(sorted(h.host for h in before if id(h) not in kept))})"
        removed.append(text)
    return remaining, removed


def select_destinations(hosts: list[HostState], spec: RequestSpec, max_attempts: int = 3,
                        filters: tuple[HostFilter, ...] = DEFAULT_FILTERS,
                        weighers: tuple[Weigher, ...] = DEFAULT_WEIGHERS) -> Selection:
    if not hosts:
        raise NoValidHost("There are 0 compute hosts.")
    passed, removed = filter_hosts(hosts, spec, filters)
    if not passed:
        raise NoValidHost("; ".join(removed) + ".")
    scores = normalised_scores(passed, spec, weighers)
    # Only the best max_attempts hosts are needed: a bounded heap is O(n), a full sort O(n log n). Equal weights
    # keep the order of ``hosts`` (Nova's stable sort keeps Placement's candidate order): the scheduler's cache
    # list is shuffled, so empty hosts of equal weight are chosen at random, not by name (by name, every boot of
    # a 10,000-host cloud landed on one compute worker's hosts, whose names sort first).
    best = heapq.nlargest(max(1, max_attempts), range(len(passed)), key=scores.__getitem__)  # stable: ties in order
    chosen = [passed[i].host for i in best]
    explanation = f"{len(passed)} of {len(hosts)} hosts passed the filters" + (
        f" ({'; '.join(removed)})" if removed else "")
    return Selection(hosts=chosen, explanation=explanation)
