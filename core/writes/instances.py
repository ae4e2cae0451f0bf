"""The conductor's writes of instance rows: the create (quota, rows, actions, tags, fixed IPs, group membership), the
compare-and-swap of an instance's state, faults, and instance actions and their events.

Every state change is a compare-and-swap: an UPDATE whose WHERE clause names the expected task_state, so a lost
race changes nothing and the caller learns it from the row count.
"""
from __future__ import annotations

import datetime as dt
import functools
import socket
from typing import Any

from sqlalchemy import DateTime, String, Text, and_, bindparam, case, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core import network, states
from core.db import plain_rows
from core.errors import ConductorError
from core.models import (Flavor, Instance, InstanceAction, InstanceActionEvent, InstanceFault, InstanceGroup,
                         InstanceGroupMember, InstanceTag, utcnow)
from core.writes import networking, quotas

_UNSET = object()


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


def reset_state(s: Session, uuid: str, vm_state: str, request_id: str, user_id: str | None,
                project_id: str | None) -> None:
    """Nova's os-resetState: vm_state set, task_state cleared, whatever the instance was doing (a CAS on the task
    state read under the row lock, so a step finishing meanwhile either lands first or finds the reset), and a
    finished ``resetState`` instance action."""
    inst = get_instance(s, uuid, lock=True)
    if inst is None or inst.deleted:
        raise ConductorError(404, f"Instance {uuid} could not be found.")
    if not cas_instance(s, uuid, expected_task_state=inst.task_state, vm_state=vm_state, task_state=None):
        raise ConductorError(409, f"Instance {uuid} changed state concurrently; retry the request.")
    now = utcnow()
    start_action(s, uuid, "resetState", request_id, user_id, project_id, now=now)
    s.execute(update(InstanceAction).where(InstanceAction.instance_uuid == uuid,
                                           InstanceAction.request_id == request_id).values(finish_time=now))


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
    count = quotas.reserve_instances(s, req["project_id"], flavor.vcpus, flavor.memory_mb,
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
            networking.allocate_fixed_ip(s, uuid, network.requested_tag(req.get("networks")))
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
    quotas.check_server_group_quota(s, req["project_id"], req["user_id"], group_id=group.id, members=count)
    return group


def _hostname(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-.")
    return (out or "server")[:63]


def start_action(s: Session, uuid: str, action: str, request_id: str, user_id: str | None,
                 project_id: str | None, now: dt.datetime | None = None,
                 canvas: tuple[dict, list[str] | tuple[str, ...]] | None = None) -> None:
    """Record the action; ``canvas`` (ctx, steps) is kept on its row at once, as ``remember_canvas`` would."""
    now = now or utcnow()
    row = {"action": action, "instance_uuid": uuid, "request_id": request_id, "user_id": user_id,
           "project_id": project_id, "start_time": now, "updated_at": now}
    if canvas is not None:
        row["canvas"] = _canvas(*canvas)
    s.execute(insert(InstanceAction.__table__), row)


# What a canvas's context carries that is rebuilt when it is sent again, never stored: the instance spec (its user
# data is sealed for one host) and the rescue image (tasks/conductor/resume.py).
_REBUILT_KEYS = ("spec", "rescue_image")


def remember_canvas(s: Session, ctx: dict, steps: list[str] | tuple[str, ...]) -> None:
    """Keep the compute canvas an action sends on the action's row (same transaction as its task_state CAS), so
    that tasks/conductor/resume.py can send it again if a broker loses its message."""
    s.execute(update(InstanceAction).where(
        InstanceAction.instance_uuid == ctx["instance_uuid"], InstanceAction.request_id == ctx["request_id"])
        .values(canvas=_canvas(ctx, steps)))


def _canvas(ctx: dict, steps: list[str] | tuple[str, ...]) -> dict:
    return {"steps": list(steps), "ctx": {k: v for k, v in ctx.items() if k not in _REBUILT_KEYS}}


def record_event(s: Session, uuid: str, request_id: str, event: str, started: float | None, result: str,
                 host: str | None = None, traceback: str | None = None, finish_action: bool = True,
                 details: str | None = None, finish_open: bool = False) -> None:
    """Add an event to the instance's action of ``request_id`` (and finish the action): the action's id is read
    inside the INSERT (no row when the instance has no such action) and the UPDATE finds the action by the same
    key, two statements in all (one on PostgreSQL: the INSERT takes the id the UPDATE returns). An event without a compute ``host`` is the conductor's: Nova records the host of
    the service that ran it, never null (its schema requires a string).

    ``finish_open`` (the instance is deleted): the same UPDATE also finishes the instance's other actions still in
    flight (an unshelve whose step found it deleting and ended quietly), as failed ("Error", as an action with a
    failed event): they would never finish otherwise."""
    now = utcnow()
    start = dt.datetime.fromtimestamp(started, dt.timezone.utc).replace(tzinfo=None) if started else now
    params = {"ev_uuid": uuid, "ev_request_id": request_id, "ev_event": event, "ev_start_time": start,
              "ev_finish_time": now, "ev_result": result, "ev_traceback": traceback,
              "ev_host": host or _SERVICE_HOST, "ev_details": details, "ev_now": now}
    shape = (finish_action or finish_open, result != "Success", finish_open)
    if s.get_bind().dialect.name == "postgresql":
        s.execute(_event_in_one(*shape), params)
        return
    s.execute(_EVENT_INSERT, params)
    s.execute(_finish_action(*shape), params)


_SERVICE_HOST = socket.gethostname()
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


@functools.lru_cache(maxsize=8)
def _finish_action(finish: bool, failed: bool, open_too: bool = False) -> Any:
    """The action's UPDATE: its updated_at, and when ``finish`` its finish_time (and message "Error" if failed);
    ``open_too``: the instance's unfinished actions too, each finished with message "Error"."""
    now = bindparam("ev_now", type_=DateTime)
    values: dict[str, Any] = {"updated_at": now}
    if finish:
        values["finish_time"] = now
        if failed:
            values["message"] = "Error"
    if not open_too:
        return update(InstanceAction.__table__).where(*_OF_REQUEST).values(**values)
    uuid_is, request_is = _OF_REQUEST
    values["message"] = case((request_is, values.get("message", InstanceAction.message)), else_="Error")
    return update(InstanceAction.__table__).where(uuid_is, or_(request_is, InstanceAction.finish_time.is_(None))
                                                  ).values(**values)


@functools.lru_cache(maxsize=8)
def _event_in_one(finish: bool, failed: bool, open_too: bool) -> Any:
    """PostgreSQL: the action's UPDATE in a data-modifying CTE and the event inserted from the id it returns (no
    row when the instance has no such action), one statement."""
    _uuid_is, request_is = _OF_REQUEST
    done = _finish_action(finish, failed, open_too).returning(InstanceAction.id, InstanceAction.request_id) \
        .cte("finished")
    return insert(InstanceActionEvent.__table__).from_select(
        ["action_id", *_EVENT_FIELDS],
        select(done.c.id, *(bindparam(f"ev_{name}", type_=kind) for name, kind in _EVENT_FIELDS.items()))
        .where(done.c.request_id == request_is.right).limit(1))
