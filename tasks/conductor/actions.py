"""Conductor side of the further server actions (rescue, rebuild, createImage, soft delete/restore, crash dump),
of the server's own fields and sub-resources (name and lock, metadata, tags, console tokens, the password a guest
posts), and the reclaim of soft-deleted servers.

The API calls these through tasks/messaging/rpc.py (tasks/conductor/common.py); a state change is a CAS on the
expected task_state; the compute canvas ``stratus.compute.instance_op | stratus.conductor.finish_instance_op``
does the driver work and records the outcome.
"""
from __future__ import annotations

import logging
import time

from celery import chain
from sqlalchemy import delete, select, update

from core import states
from core.db import write_session
from core.errors import ConductorError
from core.models import ConsoleAuthToken, Instance, InstanceTag, utcnow
from core.writes import instances, networking
from core.writes.instances import cas_instance, get_instance, record_event, start_action
from core.writes.quotas import check_metadata_items
from drivers.base import DriverError
from tasks.common import Chain, new_ctx, sig
from tasks.conductor import specs
from tasks.conductor.common import (check_state, finish_snapshot_image, invalid_state, locked_instance, require_driver,
                                    rotate_backups, rpc)
from tasks.messaging.celery_app import celery

LOG = logging.getLogger(__name__)

# Instance fields an action may change when it starts (rebuild: new image, name, metadata, ...).
_START_VALUES = {"image_ref", "display_name", "display_description", "metadata_items", "key_name", "key_data",
                 "admin_pass_enc", "user_data_enc", "hostname", "access_ip_v4", "access_ip_v6"}


def record_name(action: str) -> str:
    return states.ACTION_RECORD_NAMES.get(action, action)


# --- actions with a compute canvas ---------------------------------------------------------------------------------

@rpc("instance_op", session=False)
def instance_op(req: dict) -> dict:
    """Start ``req["action"]`` (a states.MORE_ACTIONS entry): check and CAS the state, apply the start values,
    record the instance action, then start the compute canvas."""
    uuid, action = req["instance_uuid"], req["action"]
    rule = states.MORE_ACTIONS[action]
    require_driver(action, req.get("api_name") or record_name(action))
    values = dict(req.get("values") or {})
    if set(values) - _START_VALUES:
        raise ConductorError(400, f"Cannot change {sorted(set(values) - _START_VALUES)} in {action}")
    with write_session() as s:
        inst = locked_instance(s, uuid)
        check_state(inst, req.get("api_name") or record_name(action), rule["from"])
        if not inst.host:
            raise ConductorError(409, f"Instance {uuid} is not ready")
        if action == "soft_delete":
            values["deleted_at"] = utcnow()
        if action == "restore":
            values["deleted_at"] = None
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=rule["from"],
                            task_state=rule["task_state"], **values):
            raise ConductorError(409, f"Cannot '{record_name(action)}' instance {uuid}: it changed state "
                                      f"concurrently; retry the request.")
        start_action(s, uuid, record_name(action), req["request_id"], req.get("user_id"),
                     req.get("project_id"))
        ctx = new_ctx(uuid, req["request_id"], action, host=inst.host, task_state=rule["task_state"],
                      prior_vm_state=inst.vm_state, **(req.get("params") or {}))
        ctx.update(compute_needs(s, ctx))
        instances.remember_canvas(s, ctx, INSTANCE_OP_STEPS)
    Chain(INSTANCE_OP_STEPS, ctx).apply_async()
    return {"instance_uuid": uuid}


INSTANCE_OP_STEPS = ("stratus.compute.instance_op", "stratus.conductor.finish_instance_op")


def _target_vm_state(ctx: dict) -> str:
    target = states.MORE_ACTIONS[ctx["action"]]["to"]
    if target is not None:
        return target
    prior = ctx.get("prior_vm_state")
    if ctx["action"] == "rebuild":  # Nova: a stopped server is stopped again after its rebuild; ERROR → ACTIVE
        return states.STOPPED if prior == states.STOPPED else states.ACTIVE
    return prior


def compute_needs(s, ctx: dict) -> dict:
    """What the compute step of ``ctx["action"]`` needs of the DB, for its message (compute hosts read none):
    the instance spec for a rebuild or rescue (sealed for ``ctx["host"]``), the rescue image, the disk format a
    snapshot is written in. A ConductorError (409) when it cannot be given: the action does not start."""
    action, needs = ctx["action"], {}
    try:
        if action in ("rescue", "rebuild"):
            needs["spec"] = specs.spec_message(s, ctx["instance_uuid"], ctx["host"])
        if action == "rescue" and ctx.get("rescue_image_id"):
            needs["rescue_image"] = specs.image_message(s, ctx["rescue_image_id"])
        if action in ("snapshot", "backup"):
            needs["image_disk_format"] = specs.image_disk_format(s, ctx.get("image_id"))
    except (DriverError, specs.NoSealingKey) as exc:
        raise ConductorError(409, str(exc)) from None
    return needs


@celery.task(name="stratus.conductor.finish_instance_op", ignore_result=True)
def finish_instance_op(ctx: dict) -> None:
    uuid, action = ctx["instance_uuid"], ctx["action"]
    target = _target_vm_state(ctx)
    with write_session() as s:
        done = cas_instance(s, uuid, expected_task_state=ctx["task_state"], vm_state=target,
                            task_state=None, power_state=ctx.get("power_state", states.POWER_AFTER[target]))
        if action in ("snapshot", "backup"):
            finish_snapshot_image(s, ctx)
        if action == "backup":
            rotate_backups(s, uuid, ctx["backup_type"], ctx["rotation"])
        if done:
            record_event(s, uuid, ctx["request_id"], f"compute_{action}_instance", ctx.get("t0"),
                         "Success", host=ctx.get("host"))
        else:
            LOG.info("finish_instance_op %s for %s lost its race; nothing written", action, uuid)


@celery.task(name="stratus.conductor.record_op_event", ignore_result=True)
def record_op_event(ctx: dict) -> None:
    """End of an action that changes no state (trigger_crash_dump, a live migration's abort / force-complete):
    record its event, failed when the compute step reports an ``error`` (e.g. the migration had already ended;
    the migration's own canvas records its outcome)."""
    error = ctx.get("error")
    with write_session() as s:
        record_event(s, ctx["instance_uuid"], ctx["request_id"], f"compute_{ctx['action']}",
                     ctx.get("t0"), "Error" if error else "Success", host=ctx.get("host"), details=error)


@rpc("trigger_crash_dump", session=False)
def trigger_crash_dump(req: dict) -> dict:
    """Nova: allowed in ACTIVE, PAUSED, RESCUED with no task; no task_state is set while the NMI is sent."""
    uuid = req["instance_uuid"]
    require_driver("trigger_crash_dump", "trigger_crash_dump")
    with write_session() as s:
        inst = locked_instance(s, uuid)
        check_state(inst, "trigger_crash_dump", (states.ACTIVE, states.PAUSED, states.RESCUED))
        if not inst.host:
            raise ConductorError(409, f"Instance {uuid} is not ready")
        start_action(s, uuid, "trigger_crash_dump", req["request_id"], req.get("user_id"),
                     req.get("project_id"))
        ctx = new_ctx(uuid, req["request_id"], "trigger_crash_dump", host=inst.host, task_state=None)
    chain(sig("stratus.compute.instance_op", ctx), sig("stratus.conductor.record_op_event")).apply_async()
    return {"instance_uuid": uuid}


# --- metadata ------------------------------------------------------------------------------------------------------

_METADATA_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED)


@rpc("update_metadata")
def update_metadata(s, uuid: str, op: str, items: dict | None = None, key: str | None = None) -> dict:
    """op: "replace" (PUT all), "merge" (POST), "set_key" (PUT one), "delete_key" (DELETE one)."""
    inst = locked_instance(s, uuid)
    check_state(inst, "delete metadata" if op == "delete_key" else "update metadata", _METADATA_STATES)
    current = dict(inst.metadata_items or {})
    if op == "replace":
        new = dict(items or {})
    elif op in ("merge", "set_key"):
        new = {**current, **(items or {})}
    elif op == "delete_key":
        if key not in current:
            raise ConductorError(404, "Metadata item was not found")
        new = {k: v for k, v in current.items() if k != key}
    else:
        raise ConductorError(400, f"unknown metadata operation {op}")
    if op != "delete_key":
        check_metadata_items(s, inst.project_id, len(new))
    if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=_METADATA_STATES,
                        metadata_items=new):
        raise ConductorError(409, f"Cannot 'update metadata' instance {uuid}: it changed state concurrently; "
                                  f"retry the request.")
    return new


# --- tags ----------------------------------------------------------------------------------------------------------

_TAG_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED, states.SHELVED,
               states.SHELVED_OFFLOADED)


@rpc("update_tags")
def update_tags(s, uuid: str, op: str, tags: list[str] | None = None) -> dict:
    """op: "replace" (PUT all), "add" (PUT one), "delete" (DELETE one), "delete_all"."""
    names = {"replace": "update tags", "add": "update tag", "delete": "delete tag", "delete_all": "delete tags"}
    inst = locked_instance(s, uuid)
    if inst.vm_state not in _TAG_STATES:  # Nova checks the vm_state only
        raise invalid_state(names[op], uuid, "vm_state", inst.vm_state)
    have = set(s.scalars(select(InstanceTag.tag).where(InstanceTag.instance_uuid == uuid)))
    tags = list(dict.fromkeys(tags or []))
    created = False
    if op in ("replace", "delete_all"):
        s.execute(delete(InstanceTag).where(InstanceTag.instance_uuid == uuid))
        for tag in tags if op == "replace" else []:
            s.add(InstanceTag(instance_uuid=uuid, tag=tag))
    elif op == "add":
        if tags[0] not in have:
            if len(have) + 1 > states.MAX_TAGS:
                raise ConductorError(400, f"The number of tags exceeded the per-server limit {states.MAX_TAGS}")
            s.add(InstanceTag(instance_uuid=uuid, tag=tags[0]))
            created = True
    elif op == "delete":
        if tags[0] not in have:
            raise ConductorError(404, f"Instance {uuid} has no tag '{tags[0]}'")
        s.execute(delete(InstanceTag).where(InstanceTag.instance_uuid == uuid, InstanceTag.tag == tags[0]))
    s.flush()
    result = sorted(s.scalars(select(InstanceTag.tag).where(InstanceTag.instance_uuid == uuid)))
    cas_instance(s, uuid, updated_at=utcnow())
    return {"tags": result, "created": created}


# --- the server's own fields, its consoles and the password its guest posts ----------------------------------------

update_instance = rpc("update_instance")(instances.update_instance)
# From the metadata service: a guest POSTed its (encrypted-by-the-guest) password.
set_metadata_password = rpc("set_metadata_password")(networking.set_metadata_password)
clear_metadata_password = rpc("clear_metadata_password")(networking.clear_metadata_password)
reset_state = rpc("reset_state")(instances.reset_state)


@rpc("create_console_token")
def create_console_token(s, req: dict) -> dict:
    """Store a browser-console token's hash, bound to the instance, console type and the guest's host/port."""
    now = int(time.time())
    inst = get_instance(s, req["instance_uuid"])
    if inst is None or inst.deleted:
        raise ConductorError(404, f"Instance {req['instance_uuid']} could not be found.")
    # Housekeeping as in Nova (tokens of this instance that can no longer be used).
    s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.instance_uuid == req["instance_uuid"],
                                             ConsoleAuthToken.expires <= now))
    expires = now + int(req["ttl"])
    s.add(ConsoleAuthToken(token_hash=req["token_hash"], console_type=req["console_type"], host=req["host"],
                           port=int(req["port"]), internal_access_path=req.get("internal_access_path"),
                           instance_uuid=req["instance_uuid"], expires=expires))
    return {"expires": expires}


@rpc("consume_console_token")
def consume_console_token(s, token_hash: str, console_type: str, client: str) -> dict:
    """Single use: mark the token used only if it is unused, unexpired, of this console type and its instance
    is live (one conditional UPDATE), and return where the proxy may connect."""
    now = int(time.time())
    live = select(Instance.uuid).where(Instance.deleted == 0).scalar_subquery()
    done = s.execute(update(ConsoleAuthToken).where(
        ConsoleAuthToken.token_hash == token_hash, ConsoleAuthToken.console_type == console_type,
        ConsoleAuthToken.used_at.is_(None), ConsoleAuthToken.expires > now,
        ConsoleAuthToken.instance_uuid.in_(live)).values(used_at=now, used_by=client[:64]))
    row = s.scalars(select(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == token_hash)).first()
    if done.rowcount == 1 and row is not None:
        return {"host": row.host, "port": row.port, "instance_uuid": row.instance_uuid,
                "internal_access_path": row.internal_access_path}
    if row is None:
        raise ConductorError(404, "unknown token")
    if row.console_type != console_type:
        raise ConductorError(403, f"token is for a {row.console_type} console")
    if row.used_at is not None:
        raise ConductorError(409, "token already used")
    if row.expires <= now:
        raise ConductorError(410, "token expired")
    raise ConductorError(404, "instance is gone")


# --- soft delete reclaim -------------------------------------------------------------------------------------------

def reclaim(uuid: str, request_id: str) -> bool:
    """Hard-delete one expired soft-deleted instance (the normal terminate | finish_delete canvas)."""
    with write_session() as s:
        inst = get_instance(s, uuid, lock=True)
        if inst is None or inst.deleted or inst.vm_state != states.SOFT_DELETED or inst.task_state is not None:
            return False
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=(states.SOFT_DELETED,),
                            task_state=states.DELETING):
            return False
        host = inst.host
    ctx = new_ctx(uuid, request_id, "delete", host=host, task_state=states.DELETING)
    if host:
        Chain(("stratus.compute.terminate", "stratus.conductor.finish_delete"), ctx).apply_async()
    else:
        sig("stratus.conductor.finish_delete", ctx).apply_async()
    return True
