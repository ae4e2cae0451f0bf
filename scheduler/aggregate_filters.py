"""Filters over host aggregate metadata (nova/scheduler/filters/aggregate_*.py are the model).

A host's ``aggregate_metadata`` maps each metadata key to the set of values its aggregates give it.
"""
from __future__ import annotations

import operator

from scheduler.host_state import HostState, RequestSpec

EXTRA_SPECS_SCOPE = "aggregate_instance_extra_specs"
TENANT_KEY = "filter_tenant_id"


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


_NUMERIC = {"=": operator.ge, "==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le}
_STRING = {"s==": operator.eq, "s!=": operator.ne, "s<": operator.lt, "s<=": operator.le, "s>": operator.gt,
           "s>=": operator.ge}


def spec_matches(value: str, requirement: str) -> bool:
    """Nova's extra-spec operators: ``= N`` (at least), ``== != >= <=`` numeric, ``s== s!= s< s<= s> s>=``
    string, ``<in> sub``, ``<all-in> a b``, ``<or> a <or> b``; anything else is plain string equality."""
    words = requirement.split()
    if not words:
        return value == requirement
    op, args = words[0], words[1:]
    if op == "<or>":
        return value in [alt.strip() for alt in requirement.split("<or>")[1:]]
    if op == "<in>" and len(args) == 1:
        return args[0] in value
    if op == "<all-in>" and args:
        return all(a in value for a in args)
    if op in _NUMERIC and len(args) == 1:
        have, want = _float(value), _float(args[0])
        return have is not None and want is not None and _NUMERIC[op](have, want)
    if op in _STRING and len(args) == 1:
        return _STRING[op](value, args[0])
    return value == requirement


class AggregateInstanceExtraSpecsFilter:
    """A flavor's ``aggregate_instance_extra_specs:<key>`` (or unscoped) specs must match its host's aggregates."""
    name = "AggregateInstanceExtraSpecsFilter"

    def _requirements(self, spec: RequestSpec) -> list[tuple[str, str]]:
        out = []
        for key, want in (spec.extra_specs or {}).items():
            scope, sep, rest = key.partition(":")
            if sep and scope != EXTRA_SPECS_SCOPE:
                continue  # another filter's namespace (hw:, resources:, ...)
            out.append((rest if sep else key, str(want)))
        return out

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return self._passes(host, self._requirements(spec))

    @staticmethod
    def _passes(host: HostState, requirements: list[tuple[str, str]]) -> bool:
        metadata = host.aggregate_metadata
        for key, want in requirements:
            values = metadata.get(key)
            if not values or not any(spec_matches(v, want.strip()) for v in values):
                return False
        return True

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        requirements = self._requirements(spec)
        return list(hosts) if not requirements else [h for h in hosts if self._passes(h, requirements)]


class AggregateMultiTenancyIsolation:
    """Hosts in an aggregate with ``filter_tenant_id`` (or ``filter_tenant_id*``) metadata take only those
    projects' instances; other hosts take anyone's."""
    name = "AggregateMultiTenancyIsolation"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        allowed: set[str] = set()
        for key, values in host.aggregate_metadata.items():
            if key.startswith(TENANT_KEY):
                for value in values:
                    allowed.update(t.strip() for t in value.split(",") if t.strip())
        return not allowed or spec.project_id in allowed

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        # Most hosts are in no aggregate: an empty dict passes without building the allowed set.
        return [h for h in hosts if not h.aggregate_metadata or self.host_passes(h, spec)]
