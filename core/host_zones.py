"""Availability zones of compute hosts: an aggregate's ``availability_zone`` metadata, else the node's own zone.

Read by the API (os-availability-zone, aggregates), the scheduler (host states) and the conductor (the zone an
instance lands in), so every one of them agrees on where a host is.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.orm import Session

from core.db import plain_rows
from core.models import AggregateHost, AggregateMetadata, ComputeNode

AZ_KEY = "availability_zone"


def aggregate_zones_by_host(s: Session, hosts: list[str] | None = None) -> dict[str, set[str]]:
    """Host → the availability zones of the aggregates it belongs to (usually zero or one)."""
    q = select(AggregateHost.host, AggregateMetadata.value).join(
        AggregateMetadata, AggregateMetadata.aggregate_id == AggregateHost.aggregate_id).where(
        AggregateMetadata.key == AZ_KEY)
    if hosts is not None:
        q = q.where(AggregateHost.host.in_(hosts))
    zones: dict[str, set[str]] = defaultdict(set)
    for host, zone in s.execute(q):
        zones[host].add(zone)
    return zones


def zone_from(metadata: dict[str, frozenset[str]] | None, own: str) -> str:
    """A host's zone given its aggregate metadata (see aggregate_metadata_by_host) and its node's own zone."""
    zones = (metadata or {}).get(AZ_KEY)
    return min(zones) if zones else own


def effective_zones(s: Session) -> dict[str, str]:
    """Every compute host → its availability zone."""
    from_aggregates = aggregate_zones_by_host(s)
    return {host: min(from_aggregates[host]) if from_aggregates.get(host) else own
            for host, own in s.execute(select(ComputeNode.host, ComputeNode.availability_zone))}


_HOST = bindparam("host", type_=String)
# A host's aggregate zone and its node's own, built once (every claim reads it).
_ZONE_OF = select(select(func.min(AggregateMetadata.value)).join(
    AggregateHost, AggregateHost.aggregate_id == AggregateMetadata.aggregate_id).where(
    AggregateHost.host == _HOST, AggregateMetadata.key == AZ_KEY).scalar_subquery(),
    ComputeNode.availability_zone).where(ComputeNode.host == _HOST)


def zone_of(s: Session, host: str) -> str | None:
    """The host's zone: its aggregate's, else its node's own (one query)."""
    found = plain_rows(s, _ZONE_OF, {"host": host}).first()
    if found is None:  # no compute node (yet): only an aggregate can place the host
        zones = aggregate_zones_by_host(s, [host]).get(host)
        return min(zones) if zones else None
    return found[0] or found[1]


# Every host's aggregate metadata, one (host, key, value) per row (the scheduler's refresh of changed rows joins
# it to them): built once.
AGGREGATE_METADATA = select(AggregateHost.host, AggregateMetadata.key, AggregateMetadata.value).join(
    AggregateMetadata, AggregateMetadata.aggregate_id == AggregateHost.aggregate_id)


def metadata_by_host(rows: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, frozenset[str]]]:
    """(host, key, value) rows → host → metadata key → the values of that key over all the host's aggregates."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for host, key, value in rows:
        out[host][key].add(value)
    return {h: {k: frozenset(v) for k, v in m.items()} for h, m in out.items()}


def aggregate_metadata_by_host(s: Session) -> dict[str, dict[str, frozenset[str]]]:
    """Every host's aggregate metadata (for scheduler filters), see ``metadata_by_host``."""
    return metadata_by_host(plain_rows(s, AGGREGATE_METADATA))
