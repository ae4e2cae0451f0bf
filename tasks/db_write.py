"""Compute database writes. Imported only by the conductor.

Every state change is a compare-and-swap: an UPDATE whose WHERE clause names the expected task_state, so a
lost race changes nothing and the caller learns it from the row count.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Callable
from typing import Any

from sqlalchemy import (DateTime, Integer, String, Text, and_, bindparam, delete, func, insert, select,
                        update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core import network, quota, states
from core.db import plain_rows
from core.models import (Allocation, ComputeNode, FixedIP, Flavor, Instance, InstanceAction, InstanceActionEvent,
                         InstanceFault, InstanceGroup, InstanceGroupMember, InstancePassword, InstanceTag, KeyPair,
                         Migration, Network, QuotaClass, QuotaLimit, QuotaUsage, QuotaUserLimit, QuotaUserUsage,
                         Service, utcnow)
from core.settings import get_settings

_UNSET = object()


class ConductorError(Exception):
    """An error the API shows to the client with ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# --- quotas --------------------------------------------------------------------------------------------------------
# Limits and the over-quota arithmetic live in core/quota.py; here are the writes. Usage counters change only by
# conditional UPDATEs inside the caller's transaction (the same one that creates or deletes the counted rows).

def quota_limits(s: Session, project_id: str) -> dict[str, int]:
    return quota.project_limits(s, project_id)


def _ensure_usage_row(s: Session, project_id: str, user_id: str | None = None) -> None:
    model, conds = _where(project_id, user_id)
    if s.execute(select(model.project_id).where(*conds)).first() is None:
        try:
            with s.begin_nested():
                s.execute(insert(model).values(project_id=project_id, **({"user_id": user_id} if user_id else {}),
                                               instances=0, cores=0, ram=0, server_groups=0))
        except IntegrityError:
            pass  # another transaction created it


def _where(project_id: str, user_id: str | None) -> tuple[type, list]:
    if user_id:
        return QuotaUserUsage, [QuotaUserUsage.project_id == project_id, QuotaUserUsage.user_id == user_id]
    return QuotaUsage, [QuotaUsage.project_id == project_id]


def _locked_usage(s: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """The project's (or one of its users') counters, read with a row lock (PostgreSQL/MariaDB) so the check and
    the UPDATE agree. Callers lock the project's row before a user's, so two creates cannot deadlock."""
    model, conds = _where(project_id, user_id)
    query = select(*[getattr(model, r) for r in quota.COUNTERS]).where(*conds).with_for_update()
    row = s.execute(query).first()
    if row is None:  # the first counted resource of this project (or user)
        _ensure_usage_row(s, project_id, user_id)
        row = s.execute(query).one()
    return {**dict.fromkeys(quota.RESOURCES, 0), **dict(zip(quota.COUNTERS, row))}


def _add_usage(s: Session, project_id: str, deltas: dict[str, int], limits: dict[str, int] | None,
               user_id: str | None = None) -> bool:
    """One conditional UPDATE: add ``deltas`` only if every (limited) counter stays within its limit."""
    checked = tuple(r for r, d in deltas.items() if limits is not None and d > 0 and limits[r] >= 0)
    params = {"q_project_id": project_id, **({"q_user_id": user_id} if user_id else {}),
              **{f"d_{r}": d for r, d in deltas.items()}, **{f"limit_{r}": limits[r] for r in checked}}
    # A Core UPDATE: no usage row is kept in the session (they are read with Core queries), so nothing to sync.
    return s.execute(_usage_update(bool(user_id), tuple(deltas), checked), params).rowcount == 1


@functools.lru_cache(maxsize=64)
def _usage_update(of_user: bool, changed: tuple[str, ...], checked: tuple[str, ...]) -> Any:
    """The counters' conditional UPDATE for one shape of request, built once (building it per call, with its
    cache key, was 7 % of the conductor's CPU in a boot storm)."""
    table = (QuotaUserUsage if of_user else QuotaUsage).__table__
    conds = [table.c.project_id == bindparam("q_project_id", type_=String)]
    if of_user:
        conds.append(table.c.user_id == bindparam("q_user_id", type_=String))
    delta = {r: bindparam(f"d_{r}", type_=Integer) for r in changed}
    conds += [table.c[r] + delta[r] <= bindparam(f"limit_{r}", type_=Integer) for r in checked]
    return update(table).where(and_(*conds)).values({table.c[r]: table.c[r] + delta[r] for r in changed})


def _add_both(s: Session, project_id: str, user_id: str | None, deltas: dict[str, int], limits: dict[str, int],
              ulimits: dict[str, int] | None) -> bool:
    """Add ``deltas`` to the project's and the user's counters if both stay within their limits (else neither)."""
    if not _add_usage(s, project_id, deltas, limits):
        return False
    if user_id is None or _add_usage(s, project_id, deltas, ulimits, user_id):
        return True
    _add_usage(s, project_id, {r: -d for r, d in deltas.items()}, None)  # undo the project's share
    return False


def _scopes(s: Session, project_id: str, user_id: str | None) -> tuple[quota.Scope, quota.Scope | None]:
    """(limits, locked usage) of the project and, given a user, of the user."""
    limits, ulimits = quota.project_and_user_limits(s, project_id, user_id)
    project = (limits, _locked_usage(s, project_id))
    if not user_id:
        return project, None
    return project, (ulimits, _locked_usage(s, project_id, user_id))


def check_and_reserve(s: Session, project_id: str, deltas: dict[str, int], message: str | None = None,
                      user_id: str | None = None) -> None:
    """Count ``deltas`` of counted resources (instances, cores, ram, server_groups) against the project's quota
    and, given ``user_id``, the user's.

    For other helpers' creates, e.g. ``check_and_reserve(s, project_id, {"server_groups": 1},
    "Quota exceeded, too many server groups.", user_id)``, called in the transaction that inserts the row; undo
    with ``release(s, project_id, {"server_groups": 1}, user_id)`` in the transaction that deletes it. Raises a
    403 ConductorError with ``message`` (default: Nova's "Quota exceeded for ...: Requested ..." text)."""
    unknown = set(deltas) - set(quota.COUNTERS)
    if unknown:
        raise ValueError(f"not a counted resource: {sorted(unknown)}")
    for _attempt in range(5):
        project, user = _scopes(s, project_id, user_id)
        overs, (limits, used) = quota.scoped_overs(project, user, deltas)
        if overs:
            raise ConductorError(403, message or quota.over_quota_message(overs, deltas, used, limits))
        if _add_both(s, project_id, user_id, deltas, project[0], user[0] if user else None):
            return
    raise ConductorError(409, "Quota usage changed concurrently; retry the request.")


def release(s: Session, project_id: str, deltas: dict[str, int], user_id: str | None = None) -> None:
    """Give counted resources back (the inverse of check_and_reserve)."""
    negative = {r: -d for r, d in deltas.items()}
    _add_usage(s, project_id, negative, None)
    if user_id and not _add_usage(s, project_id, negative, None, user_id):  # no row yet: create it, then count
        _ensure_usage_row(s, project_id, user_id)
        _add_usage(s, project_id, negative, None, user_id)


def _merged_limit(s: Session, project_id: str, user_id: str | None, resource: str) -> int:
    """Nova's check of a user-counted resource: the smaller of the project's and the user's limit (plain min)."""
    limit = quota.project_limits(s, project_id)[resource]
    return min(limit, quota.user_limits(s, project_id, user_id)[resource]) if user_id else limit


def check_group_members(s: Session, project_id: str, members_now: int, adding: int = 1,
                        user_id: str | None = None) -> None:
    """server_group_members: a group may not grow past the limit (count the group's members under a lock on the
    group row, in the transaction that adds the member)."""
    limit = _merged_limit(s, project_id, user_id, "server_group_members")
    if 0 <= limit < members_now + adding:
        raise ConductorError(403, "Quota exceeded, too many servers in group")


def check_metadata_items(s: Session, project_id: str, count: int) -> None:
    """For server metadata writes: ``count`` is the number of items the server would have afterwards."""
    try:
        quota.check_metadata_items(quota.project_limits(s, project_id), count)
    except quota.OverQuota as exc:
        raise ConductorError(403, exc.message) from None


def reserve_instances(s: Session, project_id: str, vcpus: int, memory_mb: int, min_count: int,
                      max_count: int, user_id: str | None = None) -> int:
    """Reserve instances, cores and RAM for a (multi-)create against the project's and the user's quota; returns
    how many instances may be created.

    First as asked (``max_count``): the conditional UPDATEs check every limit, so when they succeed nothing needs
    reading. Only when they refuse (over quota, or no usage row yet) are the counters read under a lock, to
    fall back to fewer instances (Nova's rule) or to say which limit is exceeded."""
    limits, ulimits = quota.project_and_user_limits(s, project_id, user_id)
    asked = {"instances": max_count, "cores": vcpus * max_count, "ram": memory_mb * max_count}
    if _add_both(s, project_id, user_id, asked, limits, ulimits):
        return max_count
    for _attempt in range(5):
        project, user = _scopes(s, project_id, user_id)
        try:
            count = quota.instances_allowed(*project, vcpus, memory_mb, min_count, max_count, user)
        except quota.OverQuota as exc:
            raise ConductorError(403, exc.message) from None
        if _add_both(s, project_id, user_id, {"instances": count, "cores": vcpus * count, "ram": memory_mb * count},
                     project[0], user[0] if user else None):
            return count
    raise ConductorError(409, "Quota usage changed concurrently; retry the request.")


def reserve_quota(s: Session, project_id: str, want: dict[str, int], user_id: str | None = None) -> None:
    """Add instances/cores/ram deltas (e.g. a resize's extra cores) if they fit; 403 with Nova's text if not."""
    check_and_reserve(s, project_id, {r: int(d) for r, d in want.items() if d}, user_id=user_id)


def release_quota(s: Session, project_id: str, vcpus: int, memory_mb: int, user_id: str | None = None) -> None:
    release(s, project_id, {"instances": 1, "cores": vcpus, "ram": memory_mb}, user_id)


def set_project_quotas(s: Session, project_id: str, values: dict[str, int], force: bool,
                       user_id: str | None = None) -> None:
    """os-quota-sets update, of the project or (``user_id``) of one of its users: unless forced, refuse (400)
    a limit outside Nova's settable range (below usage or the users' limits; a user's above what the project has
    left), then upsert every value. Per-project resources (network ones) are the project's even with a user."""
    _locked_usage(s, project_id)  # serializes limit changes with the creates that count against them
    if not force:
        bounds = quota.settable(s, project_id, user_id)
        for resource, limit in values.items():
            problem = quota.check_settable(resource, limit, *bounds[resource])
            if problem:
                raise ConductorError(400, problem)
    per_user = {r: v for r, v in values.items() if user_id and r not in quota.PER_PROJECT}
    per_project = {r: v for r, v in values.items() if r not in per_user}
    if per_project:
        _upsert(s, QuotaLimit, [QuotaLimit.project_id == project_id], {"project_id": project_id}, per_project)
    if per_user:
        _upsert(s, QuotaUserLimit, [QuotaUserLimit.project_id == project_id, QuotaUserLimit.user_id == user_id],
                {"project_id": project_id, "user_id": user_id}, per_user)


def delete_project_quotas(s: Session, project_id: str, user_id: str | None = None) -> None:
    """A user's limits, or the project's together with all its users' (as Nova's destroy_all_by_project)."""
    users = delete(QuotaUserLimit).where(QuotaUserLimit.project_id == project_id)
    if user_id:
        s.execute(users.where(QuotaUserLimit.user_id == user_id))
        return
    s.execute(users)
    s.execute(delete(QuotaLimit).where(QuotaLimit.project_id == project_id))


def set_class_quotas(s: Session, class_name: str, values: dict[str, int]) -> None:
    _upsert(s, QuotaClass, [QuotaClass.class_name == class_name], {"class_name": class_name}, values)


def _upsert(s: Session, model: type, where: list, key: dict[str, str], values: dict[str, int]) -> None:
    existing = {row.resource: row for row in s.scalars(select(model).where(*where).with_for_update())}
    for resource, limit in values.items():
        if resource in existing:
            existing[resource].hard_limit = limit
        else:
            s.add(model(**key, resource=resource, hard_limit=limit))
    s.flush()


def check_server_group_quota(s: Session, project_id: str, user_id: str, *, groups: int = 0,
                             group_id: int | None = None, members: int = 0) -> None:
    """Nova's server_groups (counted per project and per user) and server_group_members (per group and user)
    quotas. Callers hold the group row lock when adding members, so the member count is exact under concurrency."""
    if groups:
        check_and_reserve(s, project_id, {"server_groups": groups}, "Quota exceeded, too many server groups.",
                          user_id)
    if members:
        used = s.scalar(select(func.count()).select_from(InstanceGroupMember).where(
            InstanceGroupMember.group_id == group_id, InstanceGroupMember.user_id == user_id))
        check_group_members(s, project_id, used, members, user_id)


# --- instances -----------------------------------------------------------------------------------------------------

def get_instance(s: Session, uuid: str, *, lock: bool = False) -> Instance | None:
    q = select(Instance).where(Instance.uuid == uuid)
    if lock:
        q = q.with_for_update()
    return s.scalars(q).first()


def cas_instance(s: Session, uuid: str, expected_task_state: Any = _UNSET, expected_vm_states: tuple = (),
                 **values: Any) -> bool:
    """UPDATE the live instance only if its task_state (and vm_state) are still what the caller saw."""
    params: dict[str, Any] = {"cas_uuid": uuid}
    if expected_task_state is _UNSET:
        shape: tuple = ()
    elif isinstance(expected_task_state, (tuple, list)):
        named = [t for t in expected_task_state if t is not None]
        shape = ("in" if named else "", None in expected_task_state)
        params["cas_task_states"] = named
    elif expected_task_state is None:
        shape = ("", True)
    else:
        shape = ("one", False)
        params["cas_task_state"] = expected_task_state
    if expected_vm_states:
        params["cas_vm_states"] = list(expected_vm_states)
    values.setdefault("updated_at", utcnow())
    params.update({f"cas_set_{k}": v for k, v in values.items()})
    # A Core UPDATE (the ORM's bulk-update machinery cost more than the statement); a copy of the instance the
    # session holds is brought up to date by hand, as synchronize_session="evaluate" would. Pending ORM changes
    # are written first, as the ORM statement's autoflush did.
    s.flush()
    if s.execute(_cas_update(shape, bool(expected_vm_states), tuple(values)), params).rowcount != 1:
        return False
    for obj in list(s.identity_map.values()):
        if isinstance(obj, Instance) and obj.__dict__.get("uuid") == uuid:
            for key, value in values.items():
                set_committed_value(obj, key, value)
    return True


_I = Instance.__table__.c


@functools.lru_cache(maxsize=256)
def _cas_update(task_state: tuple, vm_states: bool, keys: tuple[str, ...]) -> Any:
    """cas_instance's UPDATE for one shape of call, built once with bound parameters. ``task_state`` is () (not
    checked) or (how the named states are matched: "one", "in" or "", whether NULL matches too)."""
    conds = [_I.uuid == bindparam("cas_uuid", type_=String), _I.deleted == 0]
    if task_state:
        how, none_ok = task_state
        cond = {"one": _I.task_state == bindparam("cas_task_state", type_=String),
                "in": _I.task_state.in_(bindparam("cas_task_states", expanding=True)), "": None}[how]
        if none_ok:
            cond = _I.task_state.is_(None) if cond is None else (cond | _I.task_state.is_(None))
        conds.append(cond)
    if vm_states:
        conds.append(_I.vm_state.in_(bindparam("cas_vm_states", expanding=True)))
    return update(Instance.__table__).where(and_(*conds)).values(
        {_I[k]: bindparam(f"cas_set_{k}", type_=_I[k].type) for k in keys})


def update_instance(s: Session, uuid: str, values: dict) -> None:
    """User-settable fields (name, description, hostname, access IPs, lock) of a live instance."""
    allowed = {"display_name", "display_description", "hostname", "access_ip_v4", "access_ip_v6", "locked",
               "locked_reason", "locked_by"}
    if set(values) - allowed:
        raise ConductorError(400, f"Cannot update {sorted(set(values) - allowed)}")
    if not cas_instance(s, uuid, **values):
        raise ConductorError(404, f"Instance {uuid} could not be found.")


def add_fault(s: Session, uuid: str, code: int, message: str, details: str = "", host: str | None = None) -> None:
    s.add(InstanceFault(instance_uuid=uuid, code=code, message=message[:255], details=details, host=host))


# The flavor columns a create copies into its instances, plain (an ORM Flavor per boot was 11 % of the conductor).
_BOOT_FLAVOR = select(Flavor.id, Flavor.flavorid, Flavor.name, Flavor.vcpus, Flavor.memory_mb, Flavor.root_gb,
                      Flavor.ephemeral_gb, Flavor.swap, Flavor.extra_specs).where(
    Flavor.flavorid == bindparam("flavorid", type_=String), Flavor.disabled.is_(False))


def create_instances(s: Session, req: dict) -> list[str]:
    """The rows of a (multi-)create in the caller's transaction: quota, instances, their create actions, tags,
    fixed IPs and group membership (Core INSERTs: nothing here is read back as an object)."""
    flavor = plain_rows(s, _BOOT_FLAVOR, {"flavorid": req["flavor_id"]}).first()
    if flavor is None:
        raise ConductorError(400, f"Flavor {req['flavor_id']} could not be found.")
    max_count = int(req.get("count", 1))
    count = reserve_instances(s, req["project_id"], flavor.vcpus, flavor.memory_mb,
                              int(req.get("min_count", max_count)), max_count, req["user_id"])
    now = utcnow()
    snapshot = {"id": flavor.flavorid, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.memory_mb,
                "disk": flavor.root_gb, "ephemeral": flavor.ephemeral_gb, "swap": flavor.swap,
                "extra_specs": flavor.extra_specs or {}}
    uuids = list(req["uuids"])[:count]
    group = _lock_group_for_boot(s, req, count)
    for index, uuid in enumerate(uuids):
        name = req["name"] if count == 1 else f"{req['name']}-{index + 1}"
        s.execute(insert(Instance.__table__), dict(
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
            access_ip_v6=req.get("access_ip_v6"), root_device_tag=req.get("root_device_tag"), launch_index=index,
            requested_host=req.get("requested_host"),
            reservation_id=req["reservation_id"],
            created_at=now, updated_at=now))
        start_action(s, uuid, "create", req["request_id"], req["user_id"], req["project_id"], now)
        tags = list(dict.fromkeys(req.get("tags") or []))
        if tags:
            s.execute(insert(InstanceTag.__table__), [{"instance_uuid": uuid, "tag": tag} for tag in tags])
        if network.wants_network(req.get("networks")):
            allocate_fixed_ip(s, uuid, network.requested_tag(req.get("networks")))
        if group is not None:
            s.execute(insert(InstanceGroupMember.__table__),
                      {"group_id": group.id, "instance_uuid": uuid, "user_id": req["user_id"]})
    return uuids


def _lock_group_for_boot(s: Session, req: dict, count: int) -> InstanceGroup | None:
    """The server group named by the boot's ``group`` hint, locked (its member count is checked against quota)."""
    if not req.get("group_uuid"):
        return None
    group = s.scalars(select(InstanceGroup).where(InstanceGroup.uuid == req["group_uuid"]).with_for_update()).first()
    if group is None:  # deleted since the API looked it up
        raise ConductorError(400, f"Instance group {req['group_uuid']} could not be found.")
    check_server_group_quota(s, req["project_id"], req["user_id"], group_id=group.id, members=count)
    return group


def _hostname(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-.")
    return (out or "server")[:63]


def start_action(s: Session, uuid: str, action: str, request_id: str, user_id: str | None,
                 project_id: str | None, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    s.execute(insert(InstanceAction.__table__), {"action": action, "instance_uuid": uuid, "request_id": request_id,
                                                 "user_id": user_id, "project_id": project_id, "start_time": now,
                                                 "updated_at": now})


def record_event(s: Session, uuid: str, request_id: str, event: str, started: float | None, result: str,
                 host: str | None = None, traceback: str | None = None, finish_action: bool = True,
                 details: str | None = None) -> None:
    """Add an event to the instance's action of ``request_id`` (and finish the action): the action's id is read
    inside the INSERT (no row when the instance has no such action) and the UPDATE finds the action by the same
    key, two statements in all."""
    now = utcnow()
    start = dt.datetime.fromtimestamp(started, dt.timezone.utc).replace(tzinfo=None) if started else now
    s.execute(_EVENT_INSERT, {"ev_uuid": uuid, "ev_request_id": request_id, "ev_event": event, "ev_start_time": start,
                              "ev_finish_time": now, "ev_result": result, "ev_traceback": traceback,
                              "ev_host": host, "ev_details": details})
    s.execute(_finish_action(finish_action, result != "Success"),
              {"ev_uuid": uuid, "ev_request_id": request_id, "ev_now": now})


# record_event's statements, built once with bound parameters (built per call, with literal values, they cost
# more than their execution).
_OF_REQUEST = (InstanceAction.instance_uuid == bindparam("ev_uuid", type_=String),
               InstanceAction.request_id == bindparam("ev_request_id", type_=String))
_EVENT_FIELDS = {"event": String, "start_time": DateTime, "finish_time": DateTime, "result": String,
                 "traceback": Text, "host": String, "details": Text}
_EVENT_INSERT = insert(InstanceActionEvent.__table__).from_select(
    ["action_id", *_EVENT_FIELDS],
    select(InstanceAction.id, *(bindparam(f"ev_{name}", type_=kind) for name, kind in _EVENT_FIELDS.items()))
    .where(*_OF_REQUEST).limit(1))


@functools.lru_cache(maxsize=4)
def _finish_action(finish: bool, failed: bool) -> Any:
    """The action's UPDATE: its updated_at, and when ``finish`` its finish_time (and message "Error" if failed)."""
    now = bindparam("ev_now", type_=DateTime)
    values: dict[str, Any] = {"updated_at": now}
    if finish:
        values["finish_time"] = now
        if failed:
            values["message"] = "Error"
    return update(InstanceAction.__table__).where(*_OF_REQUEST).values(**values)


# --- resources -----------------------------------------------------------------------------------------------------

_N = ComputeNode.__table__.c
# The claim's statements are built once, with bound parameters (building the expression per call was a third of
# the claim's CPU). updated_at moves with the usage: the scheduler's host-state cache re-reads rows by it.
_HOST, _UUID, _NOW = (bindparam("claim_host", type_=String), bindparam("claim_uuid", type_=String),
                      bindparam("claim_now", type_=DateTime))
_VCPUS, _RAM, _DISK = (bindparam(f"claim_{name}", type_=Integer) for name in ("vcpus", "ram", "disk"))
_TAKE = update(ComputeNode.__table__).where(
    _N.host == _HOST,
    _N.vcpus_used + _VCPUS <= _N.vcpus * _N.cpu_allocation_ratio,
    _N.memory_mb_used + _RAM <= _N.memory_mb * _N.ram_allocation_ratio,
    _N.local_gb_used + _DISK <= _N.local_gb * _N.disk_allocation_ratio,
).values(vcpus_used=_N.vcpus_used + _VCPUS, memory_mb_used=_N.memory_mb_used + _RAM,
         local_gb_used=_N.local_gb_used + _DISK, running_vms=_N.running_vms + 1, updated_at=_NOW)
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
    alloc = s.scalars(select(Allocation).where(Allocation.instance_uuid == instance_uuid).with_for_update()).first()
    if alloc is None:
        return False
    s.execute(update(ComputeNode).where(ComputeNode.id == alloc.compute_node_id).values(
        vcpus_used=ComputeNode.vcpus_used - alloc.vcpus, memory_mb_used=ComputeNode.memory_mb_used - alloc.memory_mb,
        local_gb_used=ComputeNode.local_gb_used - alloc.disk_gb, running_vms=ComputeNode.running_vms - 1,
        updated_at=utcnow()))
    s.execute(delete(Allocation).where(Allocation.id == alloc.id))
    return True


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


# --- server groups -------------------------------------------------------------------------------------------------

def create_server_group(s: Session, req: dict) -> dict:
    check_server_group_quota(s, req["project_id"], req["user_id"], groups=1)
    group = InstanceGroup(name=req["name"], project_id=req["project_id"], user_id=req["user_id"],
                          policy=req["policy"], rules=req.get("rules") or {})
    s.add(group)
    s.flush()
    return {"id": group.uuid}


def delete_server_group(s: Session, uuid: str) -> None:
    """Delete the group; its members stay as they are, only their membership goes (as in Nova)."""
    group = s.scalars(select(InstanceGroup).where(InstanceGroup.uuid == uuid).with_for_update()).first()
    if group is None:
        raise ConductorError(404, f"Instance group {uuid} could not be found.")
    s.execute(delete(InstanceGroupMember).where(InstanceGroupMember.group_id == group.id))
    release(s, group.project_id, {"server_groups": 1}, group.user_id)
    s.delete(group)


def remove_group_member(s: Session, instance_uuid: str) -> None:
    s.execute(delete(InstanceGroupMember).where(InstanceGroupMember.instance_uuid == instance_uuid))


# --- key pairs and flavors (compute API tables) -------------------------------------------------------------------

def create_keypair(s: Session, user_id: str, name: str, public_key: str, fingerprint: str, key_type: str,
                   project_id: str = "") -> dict:
    """key_pairs is counted per user, against the smaller of the project's and the user's limit. The project's
    usage row lock serializes concurrent creates, so the count below stays exact."""
    if project_id:
        _locked_usage(s, project_id)
    limit = _merged_limit(s, project_id, user_id if project_id else None, "key_pairs")
    used = s.scalar(select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id))
    if limit >= 0 and used + 1 > limit:
        raise ConductorError(403, "Quota exceeded, too many key pairs.")
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

_NETWORKS_SEEN: set[tuple[str, str]] = set()  # (database URL, network id): rows known to exist (never deleted)


def ensure_network(s: Session) -> Network | None:
    """Make sure the built-in network's row exists (created on first use; its id is deterministic, see
    core/network.py). Checked once per process and database; returns the row when it had to be read."""
    info = network.builtin()
    key = (str(s.get_bind().url), info.id)
    if key in _NETWORKS_SEEN:
        return None
    row = s.get(Network, info.id)
    if row is None:
        try:
            with s.begin_nested():
                s.add(Network(id=info.id, name=info.name, cidr=info.cidr, gateway=info.gateway, bridge=info.bridge))
                s.flush()
        except IntegrityError:
            pass  # created by a concurrent transaction
        row = s.get(Network, info.id)
    _NETWORKS_SEEN.add(key)
    return row


# Pools up to this size are kept as a list of address strings (a /16: 65,534 strings, about 4 MB).
_POOL_LIST_MAX = 1 << 16


@functools.lru_cache(maxsize=8)
def _pool_addresses(cidr: str, gateway: str) -> tuple[str, ...] | None:
    net = ipaddress.IPv4Network(cidr)
    if net.num_addresses > _POOL_LIST_MAX:
        return None
    return tuple(a for a in map(str, net.hosts()) if a != gateway)


def lowest_free_address(info: network.NetworkInfo, used: set[str]) -> str | None:
    """The pool's lowest address (numeric order, gateway excluded) not in ``used``; None when all are taken.

    A set lookup per candidate in the pool's cached address list (no address formatted or parsed per call);
    larger pools walk integers and format each candidate once."""
    pool = _pool_addresses(info.cidr, info.gateway)
    if pool is not None:
        return next((a for a in pool if a not in used), None)
    net = ipaddress.IPv4Network(info.cidr)
    gateway = int(ipaddress.IPv4Address(info.gateway))
    for a in range(int(net.network_address) + 1, int(net.broadcast_address)):
        if a == gateway:
            continue
        text = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
        if text not in used:
            return text
    return None


_FIXED = FixedIP.__table__.c
_USED_ADDRESSES = select(_FIXED.address).where(_FIXED.network_id == bindparam("network_id"))
_USED_AMONG = _USED_ADDRESSES.where(_FIXED.address.in_(bindparam("addresses", expanding=True)))
# A pool is searched in windows of this many addresses, each one lookup on the (network, address) unique index.
_WINDOW = 64
# (database URL, network id) -> the pool index below which this process last saw every address taken; a release
# here moves it back. Only a hint: a window's lookup and the unique key decide.
_LOW_WATER: dict[tuple[str, str], int] = {}


def allocate_fixed_ip(s: Session, instance_uuid: str, tag: str | None = None) -> str:
    """Give the instance the lowest free address of the built-in network that this process knows of, and a random
    MAC (and the device tag of its ``networks`` entry, 2.32/2.42); returns the address.

    The pool is looked at window by window from the process's low-water mark (one indexed lookup of 64 addresses
    per window, not a read of every address in use), wrapping around once to find what other processes freed.
    Concurrent allocations are settled by the unique constraints: the loser retries with the next address."""
    info = network.builtin()
    ensure_network(s)
    pool = _pool_addresses(info.cidr, info.gateway)
    if pool is None:  # larger than the cached address list: walk the whole pool against every used address
        return _allocate_from(s, info, instance_uuid, tag, lambda: lowest_free_address(
            info, set(s.execute(_USED_ADDRESSES, {"network_id": info.id}).scalars())))
    key = (str(s.get_bind().url), info.id)
    start = _LOW_WATER.get(key, 0)
    wrapped = start == 0

    def next_free() -> str | None:
        nonlocal start, wrapped
        while True:
            if start >= len(pool):
                if wrapped:
                    return None
                start, wrapped = 0, True
            window = pool[start:start + _WINDOW]
            used = set(s.execute(_USED_AMONG, {"network_id": info.id, "addresses": list(window)}).scalars())
            free = next((i for i, a in enumerate(window) if a not in used), None)
            if free is not None:
                start += free
                _LOW_WATER[key] = start
                return window[free]
            start += _WINDOW
    return _allocate_from(s, info, instance_uuid, tag, next_free)


def _allocate_from(s: Session, info: network.NetworkInfo, instance_uuid: str, tag: str | None,
                   next_free: Callable[[], str | None]) -> str:
    """Insert the address ``next_free`` names (None: the pool is full, 409) unless another allocation took it."""
    for _attempt in range(16):
        address = next_free()
        if address is None:
            raise ConductorError(409, f"No fixed IP addresses available on network {info.name} ({info.cidr}).")
        if _insert_unless_taken(s, FixedIP.__table__, {"network_id": info.id, "address": address,
                                                       "mac": network.random_mac(), "instance_uuid": instance_uuid,
                                                       "tag": tag}):
            return address
    raise ConductorError(503, f"Could not allocate a fixed IP on network {info.name}: too much contention.")


def _insert_unless_taken(s: Session, table: Any, values: dict) -> bool:
    """INSERT the row unless a unique key of it is taken (then nothing, and False): the dialect's own
    do-nothing-on-conflict, so no SAVEPOINT is needed to survive the conflict (two round trips fewer)."""
    stmt = _insert_or_nothing(s.get_bind().dialect.name, table)
    if stmt is not None:
        result = s.execute(stmt, values)
        return result.first() is not None if result.returns_rows else result.rowcount == 1
    try:
        with s.begin_nested():
            s.execute(insert(table), values)
        return True
    except IntegrityError:
        return False


@functools.lru_cache(maxsize=16)
def _insert_or_nothing(dialect: str, table: Any) -> Any:
    """The dialect's INSERT that does nothing when a unique key is taken (built once; values are bound per
    execution), or None for a dialect without one."""
    if dialect in ("postgresql", "sqlite"):
        # The row it inserted comes back (none after a conflict): the rowcount of an INSERT whose RETURNING
        # SQLAlchemy adds by itself is -1 on psycopg 3.
        insert_ = (postgresql if dialect == "postgresql" else sqlite).insert
        return insert_(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    if dialect in ("mysql", "mariadb"):
        return insert(table).prefix_with("IGNORE")  # every value here is generated and valid
    return None


def release_fixed_ips(s: Session, instance_uuid: str) -> None:
    """Free the instance's addresses; allocations in this process look from the lowest freed one again."""
    freed = s.execute(delete(FixedIP.__table__).where(_FIXED.instance_uuid == instance_uuid)
                      .returning(_FIXED.network_id, _FIXED.address)).all()
    url = str(s.get_bind().url)
    for network_id, address in freed:
        key = (url, network_id)
        if key in _LOW_WATER and network_id == (info := network.builtin()).id:  # a mark implies a cached pool
            _LOW_WATER[key] = min(_LOW_WATER[key], _pool_index(info, address))


def _pool_index(info: network.NetworkInfo, address: str) -> int:
    """The index of ``address`` in the pool's cached list (hosts in numeric order, the gateway left out)."""
    net = ipaddress.IPv4Network(info.cidr)
    value = int(ipaddress.IPv4Address(address))
    return value - int(net.network_address) - 1 - (value > int(ipaddress.IPv4Address(info.gateway)))


def delete_password(s: Session, instance_uuid: str) -> None:
    """Forget the password the instance's guest posted to the metadata service."""
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
