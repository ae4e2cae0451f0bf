"""Placement's view of Stratus's resource bookkeeping: one truth, two faces.

A compute node *is* a resource provider (uuid = compute_nodes.uuid, name = its hypervisor hostname): its VCPU,
MEMORY_MB and DISK_GB inventories are the node's totals, ``*_reserved`` columns and allocation ratios; its usages
are the counters the claim's conditional UPDATE moves; its allocations are the ``allocations`` rows (a server's
claim under the server's uuid, a move's source under its migration's uuid). Providers that operators add by
hand, their inventories and allocations, live in the ``placement_*`` tables. Nothing here is a copy.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re

import os_resource_classes
import os_traits
from sqlalchemy import Integer, Text, bindparam, cast, func, select
from sqlalchemy.orm import Session

from core.db import plain_rows
from core.models import (Aggregate, AggregateHost, Allocation, ComputeNode, Consumer, ConsumerAllocation,
                         CustomResourceClass, CustomTrait, Instance, Migration, ProviderAggregate, ProviderInventory,
                         ProviderTrait, ResourceProvider, Service)

STANDARD_CLASSES: tuple[str, ...] = tuple(os_resource_classes.STANDARDS)
STANDARD_TRAITS: frozenset[str] = frozenset(os_traits.get_traits())
CUSTOM_NAME = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
MAX_INT = 2147483647
# class -> (total column, reserved column, ratio column, used column) of compute_nodes
COMPUTE_CLASSES: dict[str, tuple[str, str, str, str]] = {
    "VCPU": ("vcpus", "vcpus_reserved", "cpu_allocation_ratio", "vcpus_used"),
    "MEMORY_MB": ("memory_mb", "memory_mb_reserved", "ram_allocation_ratio", "memory_mb_used"),
    "DISK_GB": ("local_gb", "local_gb_reserved", "disk_allocation_ratio", "local_gb_used"),
}
# allocations row column of each class
ALLOCATION_COLUMNS = {"VCPU": "vcpus", "MEMORY_MB": "memory_mb", "DISK_GB": "disk_gb"}


@dataclasses.dataclass
class Provider:
    uuid: str
    name: str
    generation: int
    parent_uuid: str | None
    root_uuid: str
    inventories: dict[str, dict]
    usages: dict[str, int]
    updated_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    node_id: int | None = None  # a compute node's
    provider_id: int | None = None  # a hand-added provider's
    host: str | None = None
    # traits that come from Stratus's rows, not from Placement writes: the driver's, COMPUTE_NODE, and
    # COMPUTE_STATUS_DISABLED while the host's compute service is disabled (as Nova's compute sets them)
    implied_traits: tuple[str, ...] = ()

    @property
    def is_compute(self) -> bool:
        return self.node_id is not None

    def capacity(self, rc: str) -> float:
        inv = self.inventories[rc]
        return (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]

    def fits(self, rc: str, amount: int) -> bool:
        inv = self.inventories.get(rc)
        return inv is not None and inv["min_unit"] <= amount <= inv["max_unit"] and \
            amount % inv["step_size"] == 0 and self.usages.get(rc, 0) + amount <= self.capacity(rc)


_NODE_COLUMNS = (ComputeNode.id, ComputeNode.uuid, ComputeNode.hypervisor_hostname, ComputeNode.generation,
                 ComputeNode.host, ComputeNode.updated_at, ComputeNode.driver_traits, Service.disabled,
                 *(getattr(ComputeNode, c) for cols in COMPUTE_CLASSES.values() for c in cols))
# Plain columns (core.db.plain_rows): building ORM entities cost ~0.3 ms a node, too slow at 10,000 providers.
_NODES = select(*_NODE_COLUMNS).join(Service, Service.id == ComputeNode.service_id).order_by(ComputeNode.id)
# traits set through Placement on the compute nodes whose ids are in [lo, hi]
_SET_TRAITS_OF_NODES = select(ProviderTrait.provider_uuid, ProviderTrait.trait).join(
    ComputeNode, ComputeNode.uuid == ProviderTrait.provider_uuid).where(
    ComputeNode.id.between(bindparam("lo"), bindparam("hi")))


def _inventories(totals: tuple, reserved: tuple, ratios: tuple) -> dict[str, dict]:
    """A node's inventories (a class whose total is 0, such as a host whose driver never started, has none)."""
    return {rc: {"total": total, "reserved": res or 0, "min_unit": 1, "max_unit": total, "step_size": 1,
                 "allocation_ratio": ratio}
            for rc, total, res, ratio in zip(COMPUTE_CLASSES, totals, reserved, ratios) if total and total > 0}


def _node_provider(row) -> Provider:
    (node_id, uuid, name, generation, host, updated_at, driver_traits, disabled,
     vcpus, vcpus_res, cpu_ratio, vcpus_used, ram, ram_res, ram_ratio, ram_used,
     disk, disk_res, disk_ratio, disk_used) = row
    implied = {*(driver_traits or ()), "COMPUTE_NODE"}
    if disabled:
        implied.add("COMPUTE_STATUS_DISABLED")
    return Provider(uuid=uuid, name=name, generation=generation or 0, parent_uuid=None, root_uuid=uuid,
                    inventories=_inventories((vcpus, ram, disk), (vcpus_res, ram_res, disk_res),
                                             (cpu_ratio, ram_ratio, disk_ratio)),
                    usages={"VCPU": vcpus_used or 0, "MEMORY_MB": ram_used or 0, "DISK_GB": disk_used or 0},
                    updated_at=updated_at, node_id=node_id, host=host, implied_traits=tuple(sorted(implied)))


def _nodes(s: Session, query) -> list[Provider]:
    return [_node_provider(row) for row in plain_rows(s, query)]


def _custom_providers(s: Session, rows: list[ResourceProvider]) -> list[Provider]:
    ids = [r.id for r in rows]
    if not ids:
        return []
    inventories: dict[int, dict[str, dict]] = {}
    for inv in s.scalars(select(ProviderInventory).where(ProviderInventory.provider_id.in_(ids))):
        inventories.setdefault(inv.provider_id, {})[inv.resource_class] = {
            "total": inv.total, "reserved": inv.reserved, "min_unit": inv.min_unit, "max_unit": inv.max_unit,
            "step_size": inv.step_size, "allocation_ratio": inv.allocation_ratio}
    usages: dict[int, dict[str, int]] = {}
    for pid, rc, used in s.execute(
            select(ConsumerAllocation.provider_id, ConsumerAllocation.resource_class, func.sum(ConsumerAllocation.used))
            .where(ConsumerAllocation.provider_id.in_(ids))
            .group_by(ConsumerAllocation.provider_id, ConsumerAllocation.resource_class)):
        usages.setdefault(pid, {})[rc] = int(used)
    out = []
    for r in rows:
        inv = inventories.get(r.id, {})
        out.append(Provider(uuid=r.uuid, name=r.name, generation=r.generation, parent_uuid=r.parent_provider_uuid,
                            root_uuid=r.root_provider_uuid, inventories=inv,
                            usages={rc: usages.get(r.id, {}).get(rc, 0) for rc in inv} | usages.get(r.id, {}),
                            updated_at=r.updated_at, created_at=r.created_at, provider_id=r.id))
    return out


def providers(s: Session, uuids: list[str] | None = None, name: str | None = None) -> list[Provider]:
    """Compute nodes' providers, then hand-added ones (by ``uuids`` and/or ``name`` when given)."""
    nodes = _NODES
    custom = select(ResourceProvider).order_by(ResourceProvider.id)
    if uuids is not None:
        nodes = nodes.where(ComputeNode.uuid.in_(uuids))
        custom = custom.where(ResourceProvider.uuid.in_(uuids))
    if name is not None:
        nodes = nodes.where(ComputeNode.hypervisor_hostname == name)
        custom = custom.where(ResourceProvider.name == name)
    return _nodes(s, nodes) + _custom_providers(s, list(s.scalars(custom)))


def provider(s: Session, uuid: str) -> Provider | None:
    found = providers(s, [uuid])
    return found[0] if found else None


def name_taken(s: Session, name: str, except_uuid: str | None = None) -> bool:
    return any(p.uuid != except_uuid for p in providers(s, name=name))


def _node_range(provs: list[Provider]) -> tuple[int, int] | None:
    ids = [p.node_id for p in provs if p.is_compute]
    return (min(ids), max(ids)) if ids else None


def traits_of(s: Session, provs: list[Provider]) -> dict[str, list[str]]:
    """Each provider's traits: those set through Placement and those its rows imply. Compute nodes' are read by
    their id range (a join), not by an IN list of uuids: at thousands of providers the list's parameters alone
    cost more than the read (~0.1 s at 9,000)."""
    out: dict[str, set[str]] = {p.uuid: set(p.implied_traits) for p in provs}
    span = _node_range(provs)
    if span is not None:
        for u, t in plain_rows(s, _SET_TRAITS_OF_NODES, {"lo": span[0], "hi": span[1]}):
            if u in out:
                out[u].add(t)
    custom = [p.uuid for p in provs if not p.is_compute]
    if custom:
        for u, t in s.execute(select(ProviderTrait.provider_uuid, ProviderTrait.trait)
                              .where(ProviderTrait.provider_uuid.in_(custom))):
            out[u].add(t)
    return {u: sorted(ts) for u, ts in out.items()}


def aggregates_of(s: Session, provs: list[Provider]) -> dict[str, list[str]]:
    """Aggregate uuids per provider: a compute node's are the host aggregates its host is in."""
    out: dict[str, list[str]] = {p.uuid: [] for p in provs}
    by_host = {p.host: p.uuid for p in provs if p.is_compute}
    span = _node_range(provs)
    if span is not None:  # by the nodes' id range, as traits_of
        for host, agg in plain_rows(s, select(AggregateHost.host, Aggregate.uuid)
                                    .join(Aggregate, Aggregate.id == AggregateHost.aggregate_id)
                                    .join(ComputeNode, ComputeNode.host == AggregateHost.host)
                                    .where(ComputeNode.id.between(span[0], span[1])).order_by(Aggregate.id)):
            if host in by_host:
                out[by_host[host]].append(agg)
    custom = [p.uuid for p in provs if not p.is_compute]
    if custom:
        for u, agg in s.execute(select(ProviderAggregate.provider_uuid, ProviderAggregate.aggregate_uuid)
                                .where(ProviderAggregate.provider_uuid.in_(custom))
                                .order_by(ProviderAggregate.aggregate_uuid)):
            out[u].append(agg)
    return out


def resource_classes(s: Session) -> list[str]:
    return list(STANDARD_CLASSES) + list(s.scalars(select(CustomResourceClass.name).order_by(CustomResourceClass.id)))


def resource_class_exists(s: Session, name: str) -> bool:
    return name in STANDARD_CLASSES or s.scalar(
        select(CustomResourceClass.id).where(CustomResourceClass.name == name)) is not None


def traits(s: Session) -> list[str]:
    return sorted(STANDARD_TRAITS) + list(s.scalars(select(CustomTrait.name).order_by(CustomTrait.name)))


def trait_exists(s: Session, name: str) -> bool:
    return name in STANDARD_TRAITS or s.scalar(select(CustomTrait.id).where(CustomTrait.name == name)) is not None


# --- allocations ---------------------------------------------------------------------------------------------------

def _resources_of(row) -> dict[str, int]:
    return {rc: getattr(row, col) for rc, col in ALLOCATION_COLUMNS.items() if getattr(row, col)}


@dataclasses.dataclass
class ConsumerView:
    allocations: dict[str, dict]  # provider uuid -> {"resources": {...}, "generation": int}
    project_id: str | None
    user_id: str | None
    generation: int | None
    consumer_type: str | None
    managed_by_claim: bool  # a server's or a move's: written by the conductor's claim, not through Placement


def server_consumer(s: Session, consumer: str) -> tuple[str, str, str] | None:
    """(project, user, type) when ``consumer`` is a server or one of its moves, else None."""
    row = s.execute(select(Instance.project_id, Instance.user_id).where(Instance.uuid == consumer)).first()
    if row is not None:
        return row[0], row[1], "INSTANCE"
    row = s.execute(select(Instance.project_id, Instance.user_id).join(
        Migration, Migration.instance_uuid == Instance.uuid).where(Migration.uuid == consumer)).first()
    if row is not None:
        return row[0], row[1], "MIGRATION"
    return None


def consumer_view(s: Session, consumer: str) -> ConsumerView:
    allocations: dict[str, dict] = {}
    for alloc, node in s.execute(select(Allocation, ComputeNode).join(
            ComputeNode, ComputeNode.id == Allocation.compute_node_id).where(Allocation.instance_uuid == consumer)):
        allocations[node.uuid] = {"resources": _resources_of(alloc), "generation": node.generation or 0}
    owner = server_consumer(s, consumer)
    if allocations or owner is not None:
        project, user, ctype = owner or (None, None, "INSTANCE")
        # A server's allocation changes only with its claim; its consumer generation is its allocation's count
        # of changes Placement cannot make, so it is reported as 1 while it holds resources.
        return ConsumerView(allocations, project, user, 1 if allocations else None, ctype, True)
    for alloc, prov in s.execute(select(ConsumerAllocation, ResourceProvider).join(
            ResourceProvider, ResourceProvider.id == ConsumerAllocation.provider_id)
            .where(ConsumerAllocation.consumer_uuid == consumer).order_by(ConsumerAllocation.id)):
        entry = allocations.setdefault(prov.uuid, {"resources": {}, "generation": prov.generation})
        entry["resources"][alloc.resource_class] = alloc.used
    row = s.get(Consumer, consumer)
    if row is None:
        return ConsumerView(allocations, None, None, None, None, False)
    return ConsumerView(allocations, row.project_id, row.user_id, row.generation, row.consumer_type, False)


def provider_allocations(s: Session, prov: Provider) -> dict[str, dict]:
    """consumer uuid -> {"resources": {...}} on ``prov``."""
    out: dict[str, dict] = {}
    if prov.is_compute:
        for alloc in s.scalars(select(Allocation).where(Allocation.compute_node_id == prov.node_id)
                               .order_by(Allocation.id)):
            out[alloc.instance_uuid] = {"resources": _resources_of(alloc)}
    else:
        for alloc in s.scalars(select(ConsumerAllocation).where(ConsumerAllocation.provider_id == prov.provider_id)
                               .order_by(ConsumerAllocation.id)):
            out.setdefault(alloc.consumer_uuid, {"resources": {}})["resources"][alloc.resource_class] = alloc.used
    return out


def project_usages(s: Session, project_id: str, user_id: str | None = None,
                   consumer_type: str | None = None, with_count: bool = False) -> dict[str, int]:
    """Totals of what a project's (or a user's) consumers hold: servers and their moves, then others
    (``with_count``: and ``consumer_count``, 1.38)."""
    totals: dict[str, int] = {}
    count = 0
    owner_of_move = select(Migration.uuid.label("consumer"), Instance.project_id, Instance.user_id).join(
        Instance, Instance.uuid == Migration.instance_uuid)
    owners = select(Instance.uuid.label("consumer"), Instance.project_id, Instance.user_id).union_all(
        owner_of_move).subquery()
    q = select(func.count(), func.sum(Allocation.vcpus), func.sum(Allocation.memory_mb),
               func.sum(Allocation.disk_gb)).join(
        owners, owners.c.consumer == Allocation.instance_uuid).where(owners.c.project_id == project_id)
    if user_id is not None:
        q = q.where(owners.c.user_id == user_id)
    if consumer_type in (None, "all", "INSTANCE", "MIGRATION"):
        if consumer_type in ("INSTANCE", "MIGRATION"):
            q = q.where(owners.c.consumer.in_(select(Instance.uuid) if consumer_type == "INSTANCE"
                                              else select(Migration.uuid)))
        n, *row = s.execute(q).first()
        count += n
        for rc, value in zip(ALLOCATION_COLUMNS, row):
            if value:
                totals[rc] = totals.get(rc, 0) + int(value)
    q = select(ConsumerAllocation.resource_class, func.sum(ConsumerAllocation.used)).join(
        Consumer, Consumer.uuid == ConsumerAllocation.consumer_uuid).where(Consumer.project_id == project_id)
    if user_id is not None:
        q = q.where(Consumer.user_id == user_id)
    if consumer_type not in (None, "all"):
        q = q.where(Consumer.consumer_type == consumer_type)
    if with_count:
        consumers = q.with_only_columns(ConsumerAllocation.consumer_uuid).subquery()
        count += s.scalar(select(func.count(func.distinct(consumers.c.consumer_uuid)))) or 0
    for rc, value in s.execute(q.group_by(ConsumerAllocation.resource_class)):
        totals[rc] = totals.get(rc, 0) + int(value)
    if with_count and totals:
        totals["consumer_count"] = count
    return totals


# --- queries of providers (list filters and allocation candidates) -------------------------------------------------

def parse_resources(text: str) -> dict[str, int]:
    """"VCPU:1,MEMORY_MB:512" -> {"VCPU": 1, "MEMORY_MB": 512}; ValueError with Placement's wording."""
    out: dict[str, int] = {}
    for part in text.split(","):
        rc, _, amount = part.strip().partition(":")
        if not rc or not amount.isdigit() or int(amount) < 1:
            raise ValueError(f"Badly formed resources parameter. Expected resources query string parameter in "
                             f"form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {text}.")
        if rc in out:
            raise ValueError(f"Badly formed resources parameter. Resource class {rc} appears more than once.")
        out[rc] = int(amount)
    return out


@dataclasses.dataclass
class TraitFilter:
    required: set[str] = dataclasses.field(default_factory=set)
    forbidden: set[str] = dataclasses.field(default_factory=set)
    any_of: list[set[str]] = dataclasses.field(default_factory=list)

    def names(self) -> set[str]:
        return self.required | self.forbidden | set().union(*self.any_of)

    def passes(self, have: set[str]) -> bool:
        return self.required <= have and not (self.forbidden & have) and all(group & have for group in self.any_of)


def parse_required(values: list[str], allow_forbidden: bool, allow_any: bool) -> TraitFilter:
    f = TraitFilter()
    for value in values:
        if value.startswith("in:") and allow_any:
            f.any_of.append({t.strip() for t in value[3:].split(",") if t.strip()})
            continue
        for t in (x.strip() for x in value.split(",")):
            if not t:
                raise ValueError(f"Invalid query string parameters: Expected 'required' parameter value of the "
                                 f"form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {value}")
            if t.startswith("!") and allow_forbidden:
                f.forbidden.add(t[1:])
            else:
                f.required.add(t)
    return f


@dataclasses.dataclass
class MemberOf:
    any_of: list[set[str]] = dataclasses.field(default_factory=list)  # each group: in at least one of these
    none_of: set[str] = dataclasses.field(default_factory=set)

    def passes(self, have: set[str]) -> bool:
        return all(group & have for group in self.any_of) and not (self.none_of & have)


def parse_member_of(values: list[str], allow_many: bool, allow_forbidden: bool) -> MemberOf:
    m = MemberOf()
    if len(values) > 1 and not allow_many:
        values = values[-1:]
    for value in values:
        forbidden = value.startswith("!") and allow_forbidden
        text = value[1:] if forbidden else value
        text = text[3:] if text.startswith("in:") else text
        uuids = {u.strip() for u in text.split(",")}
        if not all(_UUID.match(u) for u in uuids):
            raise ValueError(f"Invalid query string parameters: Expected 'member_of' parameter to contain valid "
                             f"UUID(s). Got: {value}")
        if forbidden:
            m.none_of |= uuids
        else:
            m.any_of.append(uuids)
    return m


_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def compute_capacity_clause(resources: dict[str, int]) -> list:
    """SQL conditions on compute_nodes: each asked class fits, with the claim's own arithmetic."""
    n = ComputeNode
    clauses = []
    for rc, amount in resources.items():
        total, reserved, ratio, used = (getattr(n, c) for c in COMPUTE_CLASSES[rc])
        clauses += [total > 0, amount <= total, used + amount <= (total - reserved) * ratio]
    return clauses


def matching_providers(s: Session, resources: dict[str, int], traits: TraitFilter | None = None,
                       member_of: MemberOf | None = None, in_tree: str | None = None,
                       uuids: list[str] | None = None, name: str | None = None,
                       limit: int | None = None, compute: bool = True) -> list[Provider]:
    """Providers that can take ``resources`` on their own, have the traits and are in the aggregates asked
    (``compute`` False: hand-added providers only)."""
    compute_only = compute and all(rc in COMPUTE_CLASSES for rc in resources)
    found: list[Provider] = []
    if compute_only:
        q = _NODES.where(*compute_capacity_clause(resources))
        if uuids is not None:
            q = q.where(ComputeNode.uuid.in_(uuids))
        if name is not None:
            q = q.where(ComputeNode.hypervisor_hostname == name)
        if in_tree is not None:
            q = q.where(ComputeNode.uuid == in_tree)
        if limit and not (traits is not None and traits.names()) and not (
                member_of is not None and (member_of.any_of or member_of.none_of)):
            q = q.limit(limit)  # nothing is filtered after the SQL: the limit can go into it
        found = _nodes(s, q)
    custom = select(ResourceProvider).order_by(ResourceProvider.id)
    if uuids is not None:
        custom = custom.where(ResourceProvider.uuid.in_(uuids))
    if name is not None:
        custom = custom.where(ResourceProvider.name == name)
    if in_tree is not None:
        root = s.scalar(select(ResourceProvider.root_provider_uuid).where(ResourceProvider.uuid == in_tree))
        custom = custom.where(ResourceProvider.root_provider_uuid == (root or in_tree))
    found += _custom_providers(s, list(s.scalars(custom)))
    found = [p for p in found if all(p.fits(rc, amount) for rc, amount in resources.items())]
    if traits is not None and traits.names():
        have = traits_of(s, found)
        found = [p for p in found if traits.passes(set(have[p.uuid]))]
    if member_of is not None and (member_of.any_of or member_of.none_of):
        aggs = aggregates_of(s, found)
        found = [p for p in found if member_of.passes(set(aggs[p.uuid]))]
    return found[:limit] if limit else found


# --- allocation candidates of compute nodes: the narrowest select, plain tuples -----------------------------------

# (uuid, {class: {"capacity": int, "used": int}} of every inventory, traits, parent uuid, root uuid)
Candidate = tuple[str, dict[str, dict[str, int]], list[str], "str | None", str]
# One table, no ORDER BY: with a LIMIT the scan stops at the limit-th fitting node (an ORDER BY id sorts every
# fitting node first, and a join with services hashes them all: ~10 ms of PostgreSQL's time at 10,000 nodes).
# driver_traits as its text: rows share a handful of values, each parsed once per request instead of per row.
_CANDIDATES = select(ComputeNode.id, ComputeNode.uuid, cast(ComputeNode.driver_traits, Text), ComputeNode.service_id,
                     *(getattr(ComputeNode, c) for cols in COMPUTE_CLASSES.values() for c in cols))
_DISABLED_SERVICES = select(Service.id).where(Service.disabled.is_(True))


@functools.lru_cache(maxsize=64)
def _candidates_select(classes: tuple[str, ...], enabled_only: bool, in_tree: bool, limited: bool):
    """The candidates' SELECT for a shape of request, built once (amounts, in_tree and the limit are parameters):
    building and keying a fresh one costs ~0.5 ms of a ~10 ms request."""
    n = ComputeNode
    q = _CANDIDATES
    for rc in classes:
        total, reserved, ratio, used = (getattr(n, c) for c in COMPUTE_CLASSES[rc])
        amount = bindparam(f"amount_{rc}", type_=Integer)
        q = q.where(total > 0, amount <= total, used + amount <= (total - reserved) * ratio)
    if enabled_only:
        q = q.where(n.service_id.not_in(_DISABLED_SERVICES))
    if in_tree:
        q = q.where(n.uuid == bindparam("in_tree"))
    return q.limit(bindparam("limit", type_=Integer)) if limited else q


def compute_candidates(s: Session, resources: dict[str, int], traits: TraitFilter | None = None,
                       in_tree: str | None = None, limit: int | None = None,
                       with_traits: bool = True) -> list[Candidate]:
    """Compute nodes that can take ``resources`` (only compute classes) and have ``traits``, at most ``limit``, in
    the database's order (as Placement's, deterministic but undefined): the capacity test and the limit in the
    SQL, one tuple per node. When the trait test leaves out some of the first ``limit`` rows, every fitting node
    is read. ``with_traits`` False: no traits read or returned (empty lists) unless ``traits`` needs them."""
    filtering = traits is not None and bool(traits.names())
    with_traits = with_traits or filtering
    # Nova's prefilter, !COMPUTE_STATUS_DISABLED: a disabled service implies the trait, so its nodes are left out
    # in the SQL (the trait test still runs: the trait may also have been set through Placement)
    enabled_only = filtering and "COMPUTE_STATUS_DISABLED" in traits.forbidden
    disabled: set[int] | frozenset[int] = frozenset()
    if with_traits and not enabled_only:
        disabled = set(plain_rows(s, _DISABLED_SERVICES).scalars())
    classes = tuple(sorted(resources))
    params: dict = {f"amount_{rc}": resources[rc] for rc in classes} | {"in_tree": in_tree, "limit": limit}
    page = plain_rows(s, _candidates_select(classes, enabled_only, in_tree is not None, bool(limit)), params).all()
    out = _candidate_tuples(s, page, disabled, traits if filtering else None, with_traits)
    if limit and len(out) < limit == len(page):
        every = plain_rows(s, _candidates_select(classes, enabled_only, in_tree is not None, False), params).all()
        out = _candidate_tuples(s, every, disabled, traits, with_traits)
    return out[:limit] if limit else out


def _candidate_tuples(s: Session, rows: list, disabled: set[int] | frozenset[int], traits: TraitFilter | None,
                      with_traits: bool) -> list[Candidate]:
    """Rows of _CANDIDATES -> candidates that pass ``traits``. The hot loop: one pass per node, unrolled over VCPU,
    MEMORY_MB and DISK_GB (COMPUTE_CLASSES' order)."""
    if not rows:
        return []
    set_traits: dict[str, tuple[str, ...]] = {}
    if with_traits:
        ids = [row[0] for row in rows]
        for u, t in plain_rows(s, _SET_TRAITS_OF_NODES, {"lo": min(ids), "hi": max(ids)}):
            set_traits[u] = (*set_traits.get(u, ()), t)
    seen: dict[tuple, tuple[list[str], bool]] = {}  # (driver text, disabled, set traits) -> (traits, passes)
    no_traits: list[str] = []
    out: list[Candidate] = []
    for (_, uuid, driver, service_id, vcpus, vcpus_res, cpu_ratio, vcpus_used, ram, ram_res, ram_ratio, ram_used,
         disk, disk_res, disk_ratio, disk_used) in rows:
        node_traits = no_traits
        if with_traits:
            key = (driver, service_id in disabled, set_traits.get(uuid))
            have = seen.get(key)
            if have is None:
                names = {*(json.loads(driver) or () if driver else ()), "COMPUTE_NODE", *(key[2] or ())}
                if key[1]:
                    names.add("COMPUTE_STATUS_DISABLED")
                have = seen[key] = (sorted(names), traits is None or traits.passes(names))
            if not have[1]:
                continue
            node_traits = have[0]
        inv = {}
        if vcpus and vcpus > 0:
            inv["VCPU"] = {"capacity": int((vcpus - (vcpus_res or 0)) * cpu_ratio), "used": vcpus_used or 0}
        if ram and ram > 0:
            inv["MEMORY_MB"] = {"capacity": int((ram - (ram_res or 0)) * ram_ratio), "used": ram_used or 0}
        if disk and disk > 0:
            inv["DISK_GB"] = {"capacity": int((disk - (disk_res or 0)) * disk_ratio), "used": disk_used or 0}
        out.append((uuid, inv, node_traits, None, uuid))
    return out


def candidates(s: Session, resources: dict[str, int], traits: TraitFilter | None = None,
               member_of: MemberOf | None = None, in_tree: str | None = None, limit: int | None = None,
               with_traits: bool = True) -> list[Candidate]:
    """Allocation candidates, each one provider: compute nodes (by compute_candidates when only compute classes
    are asked and no aggregate is), then hand-added providers; at most ``limit`` in all."""
    fast = all(rc in COMPUTE_CLASSES for rc in resources) and not (
        member_of is not None and (member_of.any_of or member_of.none_of))
    out = compute_candidates(s, resources, traits, in_tree, limit, with_traits) if fast else []
    if limit and len(out) >= limit:
        return out
    found = matching_providers(s, resources, traits, member_of, in_tree, limit=limit and limit - len(out),
                               compute=not fast)
    have = traits_of(s, found) if with_traits else {}
    for p in found:
        out.append((p.uuid, {rc: {"capacity": int(p.capacity(rc)), "used": p.usages.get(rc, 0)}
                             for rc in p.inventories}, have.get(p.uuid, []), p.parent_uuid, p.root_uuid))
    return out
