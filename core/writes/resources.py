"""The conductor's writes of host resources: claims and allocations (released, re-keyed, audited), migration
statuses, and the compute services and nodes their hosts report.
"""
from __future__ import annotations

import datetime

from sqlalchemy import DateTime, Integer, String, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from core.errors import ConductorError
from core.models import Allocation, ComputeNode, Instance, Migration, Service, utcnow
from core.services import COMPUTE_BINARY
from core.placement import STANDARD_TRAITS
from core.settings import Settings, get_settings


_N = ComputeNode.__table__.c
# The claim's statements are built once, with bound parameters (building the expression per call was a third of
# the claim's CPU). updated_at moves with the usage: the scheduler's host-state cache re-reads rows by it.
_HOST, _UUID, _NOW = (bindparam("claim_host", type_=String), bindparam("claim_uuid", type_=String),
                      bindparam("claim_now", type_=DateTime))
_VCPUS, _RAM, _DISK = (bindparam(f"claim_{name}", type_=Integer) for name in ("vcpus", "ram", "disk"))
_TAKE = update(ComputeNode.__table__).where(
    _N.host == _HOST,
    _N.vcpus_used + _VCPUS <= (_N.vcpus - _N.vcpus_reserved) * _N.cpu_allocation_ratio,
    _N.memory_mb_used + _RAM <= (_N.memory_mb - _N.memory_mb_reserved) * _N.ram_allocation_ratio,
    _N.local_gb_used + _DISK <= (_N.local_gb - _N.local_gb_reserved) * _N.disk_allocation_ratio,
).values(vcpus_used=_N.vcpus_used + _VCPUS, memory_mb_used=_N.memory_mb_used + _RAM,
         local_gb_used=_N.local_gb_used + _DISK, running_vms=_N.running_vms + 1, generation=_N.generation + 1,
         updated_at=_NOW)
# PostgreSQL: one statement, the UPDATE in a data-modifying CTE and the allocation inserted from the node id it
# returns (no row when it did not fit). created_at is given: a column default is not run for INSERT ... SELECT.
_CLAIMED = _TAKE.returning(_N.id).cte("claimed")
_CLAIM_IN_ONE = insert(Allocation.__table__).from_select(
    ["instance_uuid", "compute_node_id", "vcpus", "memory_mb", "disk_gb", "created_at"],
    select(_UUID, _CLAIMED.c.id, _VCPUS, _RAM, _DISK, _NOW)).returning(Allocation.__table__.c.id)
# Elsewhere: the UPDATE, then the allocation with its node id read in the INSERT.
_ALLOCATE = insert(Allocation.__table__).values(
    instance_uuid=_UUID, compute_node_id=select(_N.id).where(_N.host == _HOST).scalar_subquery(), vcpus=_VCPUS,
    memory_mb=_RAM, disk_gb=_DISK, created_at=_NOW)


def claim(s: Session, instance: Instance, host: str) -> bool:
    """Allocate the instance's resources on ``host`` if they still fit: a conditional UPDATE and the allocation
    row, one statement on PostgreSQL and two elsewhere."""
    params = {"claim_host": host, "claim_uuid": instance.uuid, "claim_vcpus": instance.vcpus,
              "claim_ram": instance.memory_mb, "claim_disk": instance.root_gb, "claim_now": utcnow()}
    if s.get_bind().dialect.name == "postgresql":
        return s.execute(_CLAIM_IN_ONE, params).first() is not None
    if s.execute(_TAKE, params).rowcount != 1:
        return False
    s.execute(_ALLOCATE, params)
    return True


def release_allocation(s: Session, instance_uuid: str) -> bool:
    # One DELETE ... RETURNING (it locks the row as SELECT ... FOR UPDATE did; of two concurrent releases only one
    # gets it back), then the node's usage.
    alloc = s.execute(delete(Allocation).where(Allocation.instance_uuid == instance_uuid).returning(
        Allocation.compute_node_id, Allocation.vcpus, Allocation.memory_mb, Allocation.disk_gb)).first()
    if alloc is None:
        return False
    s.execute(update(ComputeNode).where(ComputeNode.id == alloc.compute_node_id).values(
        vcpus_used=ComputeNode.vcpus_used - alloc.vcpus, memory_mb_used=ComputeNode.memory_mb_used - alloc.memory_mb,
        local_gb_used=ComputeNode.local_gb_used - alloc.disk_gb, running_vms=ComputeNode.running_vms - 1,
        generation=ComputeNode.generation + 1, updated_at=utcnow()))
    return True


def rekey_allocation(s: Session, old_consumer: str, new_consumer: str) -> None:
    """Hand an allocation to another consumer (a move holds the source's resources under its migration's uuid)."""
    s.execute(update(Allocation).where(Allocation.instance_uuid == old_consumer).values(instance_uuid=new_consumer))


def cas_migration(s: Session, migration_uuid: str, expected: tuple[str, ...], status: str) -> bool:
    """Move a migration to ``status`` only if it is still in one of the ``expected`` statuses."""
    return s.execute(update(Migration).where(Migration.uuid == migration_uuid, Migration.status.in_(expected))
                     .values(status=status, updated_at=utcnow())).rowcount == 1


# Statuses of a move that still holds resources: cold moves say "migrating", live migrations "running" (Nova's).
IN_FLIGHT_MIGRATIONS = ("migrating", "accepted", "queued", "preparing", "running", "finished", "reverting")


def orphaned_allocations(s: Session) -> list[dict]:
    """Allocations whose instance is deleted or was never created (nova-manage placement audit)."""
    live = select(Instance.uuid).where(Instance.deleted == 0)
    # A move in flight holds the source's resources under its migration's uuid (tasks/conductor/moves.py).
    moving = select(Migration.uuid).where(Migration.status.in_(IN_FLIGHT_MIGRATIONS),
                                          Migration.instance_uuid.in_(live))
    rows = s.execute(select(Allocation.instance_uuid, ComputeNode.host, Allocation.vcpus, Allocation.memory_mb,
                            Allocation.disk_gb, Instance.deleted)
                     .join(ComputeNode, ComputeNode.id == Allocation.compute_node_id)
                     .outerjoin(Instance, Instance.uuid == Allocation.instance_uuid)
                     .where(~Allocation.instance_uuid.in_(live), ~Allocation.instance_uuid.in_(moving))
                     .order_by(Allocation.id))
    return [{"instance_uuid": u, "host": h, "vcpus": c, "memory_mb": m, "disk_gb": d,
             "instance": "deleted" if deleted else "missing"} for u, h, c, m, d, deleted in rows]


def report_service(s: Session, host: str, resources: dict, binary: str = COMPUTE_BINARY) -> None:
    service = s.scalars(select(Service).where(Service.host == host, Service.binary == binary)).first()
    node = s.scalars(select(ComputeNode).where(ComputeNode.host == host)).first()
    _apply_report(s, host, resources, service, node, binary)


# Hosts per IN list of a batched report (SQLite's bound-parameter limit is 32,766; PostgreSQL has none to speak of).
_REPORT_CHUNK = 1000


def report_services(s: Session, reports: dict[str, dict], binary: str = COMPUTE_BINARY) -> None:
    """A compute worker's batched report (``{host: resources}``, only the hosts whose inventory changed, or all
    of them at registration and at the rare full refresh): per chunk of hosts two reads, one INSERT each for the
    new services and nodes (a worker's registration), and writes only where a value differs (``updated_at`` is
    the scheduler cache's change mark)."""
    cfg = get_settings()
    now = utcnow()
    hosts = sorted(reports)
    for i in range(0, len(hosts), _REPORT_CHUNK):
        chunk = hosts[i:i + _REPORT_CHUNK]
        services = {r.host: r for r in s.scalars(select(Service).where(Service.host.in_(chunk),
                                                                        Service.binary == binary))}
        if new := [h for h in chunk if h not in services]:
            s.execute(insert(Service), [{"host": h, "binary": binary, "topic": "compute", "updated_at": now,
                                         "last_seen_at": now if reports[h].get("up", True) else None}
                                        for h in new])
            services.update((r.host, r) for r in s.scalars(select(Service).where(Service.host.in_(new),
                                                                                 Service.binary == binary)))
        nodes = {r.host: r for r in s.scalars(select(ComputeNode).where(ComputeNode.host.in_(chunk)))}
        if new_nodes := [h for h in chunk if h not in nodes]:
            s.execute(insert(ComputeNode), [{**_node_values(h, reports[h], cfg, now),
                                             "service_id": services[h].id} for h in new_nodes])
        for host in chunk:
            if host in nodes:
                _apply_report(s, host, reports[host], services[host], nodes[host], binary, touch=False)


def _inventory_of(resources: dict) -> tuple[dict, list[str]]:
    """The node columns and the standard traits a report gives."""
    inventory = {k: resources[k] for k in ("hypervisor_hostname", "hypervisor_type", "hypervisor_version", "vcpus",
                                           "memory_mb", "local_gb", "host_ip")}
    if resources.get("sealing_key"):  # a host whose driver is down still reports its key
        inventory["sealing_key"] = resources["sealing_key"]
    return inventory, sorted(t for t in resources.get("traits") or () if t in STANDARD_TRAITS)


def _node_values(host: str, resources: dict, cfg: Settings, now: datetime.datetime) -> dict:
    """A new compute node's columns (its service_id apart)."""
    inventory, traits = _inventory_of(resources)
    return {"host": host, "availability_zone": resources.get("availability_zone") or cfg.availability_zone,
            "cpu_allocation_ratio": cfg.cpu_allocation_ratio, "ram_allocation_ratio": cfg.ram_allocation_ratio,
            "disk_allocation_ratio": cfg.disk_allocation_ratio, "updated_at": now, "driver_traits": traits,
            **inventory}


def _apply_report(s: Session, host: str, resources: dict, service: Service | None, node: ComputeNode | None,
                  binary: str, touch: bool = True) -> None:
    """Register or update one host's service and node. ``touch``: move ``updated_at`` even when nothing changed
    (the single report's behaviour); a batched report leaves unchanged rows alone."""
    cfg = get_settings()
    now = utcnow()
    up = resources.get("up", True)
    if service is None:
        service = Service(host=host, binary=binary, topic="compute", last_seen_at=now if up else None,
                          updated_at=now)
        s.add(service)
        s.flush()
    elif touch:
        service.updated_at = now
        if up:
            service.last_seen_at = now
    inventory, traits = _inventory_of(resources)
    if node is None:
        s.add(ComputeNode(service_id=service.id, **_node_values(host, resources, cfg, now)))
        return
    changed = any(getattr(node, k) != v for k, v in inventory.items() if k != "sealing_key") \
        or (node.driver_traits or []) != traits
    if not touch and not changed and node.sealing_key == inventory.get("sealing_key", node.sealing_key):
        return
    for k, v in inventory.items():
        setattr(node, k, v)
    node.driver_traits = traits
    if changed:  # Placement's provider generation moves with its inventories and traits
        node.generation = ComputeNode.generation + 1
    node.updated_at = now
    if not touch:
        service.updated_at = now


def update_service(s: Session, service_uuid: str, changes: dict) -> None:
    svc = s.scalars(select(Service).where(Service.uuid == service_uuid)).first()
    if svc is None:
        raise ConductorError(404, f"Service {service_uuid} could not be found.")
    if "status" in changes:
        svc.disabled = changes["status"] == "disabled"
        svc.disabled_reason = changes.get("disabled_reason") if svc.disabled else None
    if "forced_down" in changes:
        svc.forced_down = bool(changes["forced_down"])
    svc.updated_at = utcnow()


def report_heartbeat(s: Session, hosts: list[str], binary: str = COMPUTE_BINARY) -> None:
    s.execute(update(Service).where(Service.host.in_(hosts), Service.binary == binary).values(
        last_seen_at=utcnow()))


def report_process_heartbeat(s: Session, host: str, binary: str) -> None:
    """A conductor's or scheduler's heartbeat: its service row (Nova's ``internal`` zone) is registered on the
    first one, then only ``last_seen_at`` moves (``updated_at`` is the scheduler cache's change mark)."""
    now = utcnow()
    moved = s.execute(update(Service).where(Service.host == host, Service.binary == binary).values(
        last_seen_at=now)).rowcount
    if not moved:
        s.add(Service(host=host, binary=binary, topic=binary.removeprefix("nova-"), last_seen_at=now,
                      updated_at=now))
