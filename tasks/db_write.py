"""Compute database writes. Imported only by the conductor.

Every state change is a compare-and-swap: an UPDATE whose WHERE clause names the expected task_state, so a
lost race changes nothing and the caller learns it from the row count.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import (Allocation, ComputeNode, FixedIP, Flavor, Instance, InstanceAction, InstanceActionEvent,
                        InstanceFault, InstancePassword, InstanceTag, KeyPair, Network, QuotaLimit, QuotaUsage, Service, utcnow)
from app import network
from app.settings import get_settings
from tasks import states

_UNSET = object()


class ConductorError(Exception):
    """An error the API shows to the client with ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# --- quotas --------------------------------------------------------------------------------------------------------

QUOTA_RESOURCES = ("instances", "cores", "ram")


def quota_limits(s: Session, project_id: str) -> dict[str, int]:
    cfg = get_settings()
    limits = {"instances": cfg.quota_instances, "cores": cfg.quota_cores, "ram": cfg.quota_ram,
              "key_pairs": cfg.quota_key_pairs}
    for row in s.scalars(select(QuotaLimit).where(QuotaLimit.project_id == project_id)):
        limits[row.resource] = row.hard_limit
    return limits


def _ensure_usage_row(s: Session, project_id: str) -> None:
    if s.get(QuotaUsage, project_id) is None:
        try:
            with s.begin_nested():
                s.execute(insert(QuotaUsage).values(project_id=project_id, instances=0, cores=0, ram=0))
        except IntegrityError:
            pass  # another transaction created it


def reserve_quota(s: Session, project_id: str, want: dict[str, int]) -> None:
    """Add ``want`` to the project's usage only if every limit still holds (one conditional UPDATE)."""
    _ensure_usage_row(s, project_id)
    limits = quota_limits(s, project_id)
    conds = [QuotaUsage.project_id == project_id]
    for res in QUOTA_RESOURCES:
        if limits[res] >= 0:
            conds.append(getattr(QuotaUsage, res) + want[res] <= limits[res])
    result = s.execute(update(QuotaUsage).where(and_(*conds)).values(
        {getattr(QuotaUsage, r): getattr(QuotaUsage, r) + want[r] for r in QUOTA_RESOURCES}))
    if result.rowcount == 1:
        return
    usage = s.get(QuotaUsage, project_id)
    s.refresh(usage)
    overs = [r for r in QUOTA_RESOURCES if limits[r] >= 0 and getattr(usage, r) + want[r] > limits[r]]
    first = overs[0] if overs else "instances"
    raise ConductorError(403, f"Quota exceeded for {', '.join(overs) or first}: Requested {want[first]}, but "
                              f"already used {getattr(usage, first)} of {limits[first]} {first}")


def release_quota(s: Session, project_id: str, vcpus: int, memory_mb: int) -> None:
    s.execute(update(QuotaUsage).where(QuotaUsage.project_id == project_id).values(
        instances=QuotaUsage.instances - 1, cores=QuotaUsage.cores - vcpus, ram=QuotaUsage.ram - memory_mb))


# --- instances -----------------------------------------------------------------------------------------------------

def get_instance(s: Session, uuid: str, *, lock: bool = False) -> Instance | None:
    q = select(Instance).where(Instance.uuid == uuid)
    if lock:
        q = q.with_for_update()
    return s.scalars(q).first()


def cas_instance(s: Session, uuid: str, expected_task_state: Any = _UNSET, expected_vm_states: tuple = (),
                 **values: Any) -> bool:
    """UPDATE the live instance only if its task_state (and vm_state) are still what the caller saw."""
    conds = [Instance.uuid == uuid, Instance.deleted == 0]
    if expected_task_state is not _UNSET:
        if isinstance(expected_task_state, (tuple, list)):
            none_ok = None in expected_task_state
            named = [t for t in expected_task_state if t is not None]
            cond = Instance.task_state.in_(named) if named else None
            if none_ok:
                cond = Instance.task_state.is_(None) if cond is None else (cond | Instance.task_state.is_(None))
            conds.append(cond)
        elif expected_task_state is None:
            conds.append(Instance.task_state.is_(None))
        else:
            conds.append(Instance.task_state == expected_task_state)
    if expected_vm_states:
        conds.append(Instance.vm_state.in_(expected_vm_states))
    values.setdefault("updated_at", utcnow())
    return s.execute(update(Instance).where(and_(*conds)).values(**values)).rowcount == 1


def update_instance(s: Session, uuid: str, values: dict) -> None:
    """User-settable fields (name, description, hostname, access IPs, lock) of a live instance."""
    allowed = {"display_name", "display_description", "hostname", "access_ip_v4", "access_ip_v6", "locked",
               "locked_reason"}
    if set(values) - allowed:
        raise ConductorError(400, f"Cannot update {sorted(set(values) - allowed)}")
    if not cas_instance(s, uuid, **values):
        raise ConductorError(404, f"Instance {uuid} could not be found.")


def add_fault(s: Session, uuid: str, code: int, message: str, details: str = "", host: str | None = None) -> None:
    s.add(InstanceFault(instance_uuid=uuid, code=code, message=message[:255], details=details, host=host))


def create_instances(s: Session, req: dict) -> list[str]:
    flavor = s.scalars(select(Flavor).where(Flavor.flavorid == req["flavor_id"], Flavor.disabled.is_(False))).first()
    if flavor is None:
        raise ConductorError(400, f"Flavor {req['flavor_id']} could not be found.")
    count = int(req.get("count", 1))
    reserve_quota(s, req["project_id"], {"instances": count, "cores": flavor.vcpus * count,
                                         "ram": flavor.memory_mb * count})
    now = utcnow()
    snapshot = {"id": flavor.flavorid, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.memory_mb,
                "disk": flavor.root_gb, "ephemeral": flavor.ephemeral_gb, "swap": flavor.swap,
                "extra_specs": flavor.extra_specs or {}}
    uuids = list(req["uuids"])[:count]
    for index, uuid in enumerate(uuids):
        name = req["name"] if count == 1 else f"{req['name']}-{index + 1}"
        s.add(Instance(
            uuid=uuid, display_name=name, display_description=req.get("description"),
            hostname=req.get("hostname") or _hostname(name), project_id=req["project_id"],
            user_id=req["user_id"], image_ref=req["image_id"], flavor_id=flavor.id, flavor_snapshot=snapshot,
            vcpus=flavor.vcpus, memory_mb=flavor.memory_mb, root_gb=flavor.root_gb,
            vm_state=states.BUILDING, task_state=states.SCHEDULING, power_state=0,
            requested_availability_zone=req.get("availability_zone"),
            availability_zone=req.get("availability_zone"), key_name=req.get("key_name"),
            key_data=req.get("key_data"), user_data_enc=req.get("user_data_enc"),
            admin_pass_enc=req.get("admin_pass_enc"), config_drive=req.get("config_drive") or "",
            metadata_items=req.get("metadata") or {}, networks_request=req.get("networks"),
            scheduler_hints=req.get("scheduler_hints") or {}, access_ip_v4=req.get("access_ip_v4"),
            access_ip_v6=req.get("access_ip_v6"), launch_index=index, reservation_id=req["reservation_id"],
            created_at=now, updated_at=now))
        s.add(InstanceAction(action="create", instance_uuid=uuid, request_id=req["request_id"],
                             user_id=req["user_id"], project_id=req["project_id"], start_time=now, updated_at=now))
        for tag in dict.fromkeys(req.get("tags") or []):
            s.add(InstanceTag(instance_uuid=uuid, tag=tag))
        if network.wants_network(req.get("networks")):
            allocate_fixed_ip(s, uuid)
    return uuids


def _hostname(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-.")
    return (out or "server")[:63]


def start_action(s: Session, uuid: str, action: str, request_id: str, user_id: str | None,
                 project_id: str | None) -> None:
    now = utcnow()
    s.add(InstanceAction(action=action, instance_uuid=uuid, request_id=request_id, user_id=user_id,
                         project_id=project_id, start_time=now, updated_at=now))


def record_event(s: Session, uuid: str, request_id: str, event: str, started: float | None, result: str,
                 host: str | None = None, traceback: str | None = None, finish_action: bool = True) -> None:
    action = s.scalars(select(InstanceAction).where(InstanceAction.instance_uuid == uuid,
                                                    InstanceAction.request_id == request_id)).first()
    if action is None:
        return
    now = utcnow()
    start = dt.datetime.fromtimestamp(started, dt.timezone.utc).replace(tzinfo=None) if started else now
    s.add(InstanceActionEvent(action_id=action.id, event=event, start_time=start, finish_time=now, result=result,
                              traceback=traceback, host=host))
    action.updated_at = now
    if finish_action:
        action.finish_time = now
        if result != "Success":
            action.message = "Error"


# --- resources -----------------------------------------------------------------------------------------------------

def claim(s: Session, instance: Instance, host: str) -> bool:
    """Allocate the instance's resources on ``host`` if they still fit (one conditional UPDATE)."""
    node = s.scalars(select(ComputeNode).where(ComputeNode.host == host)).first()
    if node is None:
        return False
    ok = s.execute(update(ComputeNode).where(
        ComputeNode.id == node.id,
        ComputeNode.vcpus_used + instance.vcpus <= ComputeNode.vcpus * ComputeNode.cpu_allocation_ratio,
        ComputeNode.memory_mb_used + instance.memory_mb <= ComputeNode.memory_mb * ComputeNode.ram_allocation_ratio,
        ComputeNode.local_gb_used + instance.root_gb <= ComputeNode.local_gb * ComputeNode.disk_allocation_ratio,
    ).values(vcpus_used=ComputeNode.vcpus_used + instance.vcpus,
             memory_mb_used=ComputeNode.memory_mb_used + instance.memory_mb,
             local_gb_used=ComputeNode.local_gb_used + instance.root_gb,
             running_vms=ComputeNode.running_vms + 1)).rowcount == 1
    if ok:
        s.add(Allocation(instance_uuid=instance.uuid, compute_node_id=node.id, vcpus=instance.vcpus,
                         memory_mb=instance.memory_mb, disk_gb=instance.root_gb))
        s.flush()
    return ok


def release_allocation(s: Session, instance_uuid: str) -> bool:
    alloc = s.scalars(select(Allocation).where(Allocation.instance_uuid == instance_uuid).with_for_update()).first()
    if alloc is None:
        return False
    s.execute(update(ComputeNode).where(ComputeNode.id == alloc.compute_node_id).values(
        vcpus_used=ComputeNode.vcpus_used - alloc.vcpus, memory_mb_used=ComputeNode.memory_mb_used - alloc.memory_mb,
        local_gb_used=ComputeNode.local_gb_used - alloc.disk_gb, running_vms=ComputeNode.running_vms - 1))
    s.execute(delete(Allocation).where(Allocation.id == alloc.id))
    return True


def report_service(s: Session, host: str, resources: dict, binary: str = "stratus-compute") -> None:
    cfg = get_settings()
    now = utcnow()
    up = resources.get("up", True)
    service = s.scalars(select(Service).where(Service.host == host, Service.binary == binary)).first()
    if service is None:
        service = Service(host=host, binary=binary, topic="compute", last_seen_at=now if up else None,
                          updated_at=now)
        s.add(service)
        s.flush()
    else:
        service.updated_at = now
        if up:
            service.last_seen_at = now
    node = s.scalars(select(ComputeNode).where(ComputeNode.host == host)).first()
    inventory = {k: resources[k] for k in ("hypervisor_hostname", "hypervisor_type", "hypervisor_version", "vcpus",
                                           "memory_mb", "local_gb", "host_ip")}
    if node is None:
        s.add(ComputeNode(service_id=service.id, host=host, availability_zone=resources.get("availability_zone")
                          or cfg.availability_zone, cpu_allocation_ratio=cfg.cpu_allocation_ratio,
                          ram_allocation_ratio=cfg.ram_allocation_ratio,
                          disk_allocation_ratio=cfg.disk_allocation_ratio, updated_at=now, **inventory))
    else:
        for k, v in inventory.items():
            setattr(node, k, v)
        node.updated_at = now


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


def report_heartbeat(s: Session, hosts: list[str], binary: str = "stratus-compute") -> None:
    s.execute(update(Service).where(Service.host.in_(hosts), Service.binary == binary).values(
        last_seen_at=utcnow()))


# --- key pairs and flavors (compute API tables) -------------------------------------------------------------------

def create_keypair(s: Session, user_id: str, name: str, public_key: str, fingerprint: str, key_type: str) -> dict:
    limit = quota_limits(s, "")["key_pairs"]
    used = s.scalar(select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id))
    if limit >= 0 and used + 1 > limit:
        raise ConductorError(403, f"Quota exceeded for key_pairs: Requested 1, but already used {used} of "
                                  f"{limit} key_pairs")
    try:
        with s.begin_nested():
            kp = KeyPair(user_id=user_id, name=name, public_key=public_key, fingerprint=fingerprint, type=key_type)
            s.add(kp)
            s.flush()
    except IntegrityError:
        raise ConductorError(409, f"Key pair '{name}' already exists.") from None
    return {"id": kp.id}


def delete_keypair(s: Session, user_id: str, name: str) -> None:
    if s.execute(delete(KeyPair).where(KeyPair.user_id == user_id, KeyPair.name == name)).rowcount == 0:
        raise ConductorError(404, f"Keypair {name} not found for user {user_id}.")


def create_flavor(s: Session, values: dict) -> None:
    if s.scalars(select(Flavor).where((Flavor.flavorid == values["flavorid"]) |
                                      (Flavor.name == values["name"]))).first() is not None:
        raise ConductorError(409, f"Flavor with name {values['name']} or ID {values['flavorid']} already exists.")
    s.add(Flavor(**values))


def delete_flavor(s: Session, flavorid: str) -> None:
    flavor = s.scalars(select(Flavor).where(Flavor.flavorid == flavorid, Flavor.disabled.is_(False))).first()
    if flavor is None:
        raise ConductorError(404, f"Flavor {flavorid} could not be found.")
    # Instances keep a snapshot of their flavor; the row stays (disabled) for the foreign key.
    flavor.disabled = True
    flavor.name = f"{flavor.name}-deleted-{flavor.id}"
    flavor.flavorid = f"{flavor.flavorid}-deleted-{flavor.id}"


# --- instance networking and metadata password ---------------------------------------------------------------------

def ensure_network(s: Session) -> Network:
    """The built-in network's row (created on first use; its id is deterministic, see app/network.py)."""
    info = network.builtin()
    row = s.get(Network, info.id)
    if row is None:
        try:
            with s.begin_nested():
                s.add(Network(id=info.id, name=info.name, cidr=info.cidr, gateway=info.gateway, bridge=info.bridge))
                s.flush()
        except IntegrityError:
            pass  # created by a concurrent transaction
        row = s.get(Network, info.id)
    return row


def allocate_fixed_ip(s: Session, instance_uuid: str) -> FixedIP:
    """Give the instance the lowest free address of the built-in network and a random MAC.

    Concurrent allocations are settled by the unique constraints: the loser retries with the next address."""
    info = network.builtin()
    ensure_network(s)
    for _attempt in range(16):
        used = set(s.scalars(select(FixedIP.address).where(FixedIP.network_id == info.id)))
        address = next((a for a in info.pool() if a not in used), None)
        if address is None:
            raise ConductorError(409, f"No fixed IP addresses available on network {info.name} ({info.cidr}).")
        try:
            with s.begin_nested():
                row = FixedIP(network_id=info.id, address=address, mac=network.random_mac(),
                              instance_uuid=instance_uuid)
                s.add(row)
                s.flush()
            return row
        except IntegrityError:
            continue
    raise ConductorError(503, f"Could not allocate a fixed IP on network {info.name}: too much contention.")


def release_fixed_ips(s: Session, instance_uuid: str) -> None:
    s.execute(delete(FixedIP).where(FixedIP.instance_uuid == instance_uuid))
    s.execute(delete(InstancePassword).where(InstancePassword.instance_uuid == instance_uuid))


def set_metadata_password(s: Session, instance_uuid: str, password: str) -> None:
    """Store the guest's password once (Nova: a second POST is a 409)."""
    inst = get_instance(s, instance_uuid)
    if inst is None or inst.deleted:
        raise ConductorError(404, f"Instance {instance_uuid} could not be found.")
    try:
        with s.begin_nested():
            s.add(InstancePassword(instance_uuid=instance_uuid, password=password))
            s.flush()
    except IntegrityError:
        raise ConductorError(409, "Password already set.") from None
