"""Conductor side of the further server actions (rescue, rebuild, createImage, soft delete/restore, crash dump)
and of the server sub-resources that change instance rows (metadata, tags).

Same rules as tasks/conductor.py: the API calls these through tasks/messaging/rpc.py; a state change is a CAS on the
expected task_state; the compute canvas ``stratus.compute.instance_op | stratus.conductor.finish_instance_op``
does the driver work and records the outcome.
"""
from __future__ import annotations

import logging
from typing import Any

from celery import chain
from sqlalchemy import delete, select, update

from core import image_store, states
from core.db import write_session
from core.models import Image, InstanceTag, utcnow
from core.settings import get_settings
from drivers import supports
from tasks import db_write
from tasks.common import Chain, new_ctx, sig
from tasks.conductor import rpc
from tasks.db_write import ConductorError
from tasks.messaging.celery_app import celery

LOG = logging.getLogger(__name__)

# Instance fields an action may change when it starts (rebuild: new image, name, metadata, ...).
_START_VALUES = {"image_ref", "display_name", "display_description", "metadata_items", "key_name", "key_data",
                 "admin_pass_enc", "user_data_enc", "hostname", "access_ip_v4", "access_ip_v6"}
MAX_TAGS = states.MAX_TAGS


_MIGRATION_CALLS = ("migrate_disk_and_power_off", "finish_migration", "finish_revert_migration")
# Optional driver methods each action needs (drivers/base.py); without them the API answers 409 up front.
_DRIVER_CALLS = {"rescue": ("rescue",), "unrescue": ("unrescue",), "snapshot": ("snapshot",),
                 "trigger_crash_dump": ("trigger_crash_dump",), "resize": _MIGRATION_CALLS,
                 "migrate": _MIGRATION_CALLS, "live_migrate": ("live_migrate",),
                 "live_migration_abort": ("live_migration_abort",),
                 "live_migration_force_complete": ("live_migration_force_complete",)}


def require_driver(action: str, api_name: str) -> None:
    name = get_settings().compute_driver
    if any(not supports(name, call) for call in _DRIVER_CALLS.get(action, ())):
        raise ConductorError(409, f"The {name} compute driver does not support {api_name}.")


def record_name(action: str) -> str:
    return states.ACTION_RECORD_NAMES.get(action, action)


def invalid_state(action: str, uuid: str, attr: str, state: Any) -> ConductorError:
    """Nova's raise_http_conflict_for_instance_invalid_state message."""
    return ConductorError(409, f"Cannot '{action}' instance {uuid} while it is in {attr} {state}")


def _locked_instance(s, uuid: str):
    inst = db_write.get_instance(s, uuid, lock=True)
    if inst is None or inst.deleted:
        raise ConductorError(404, f"Instance {uuid} could not be found.")
    return inst


def _check_state(inst, name: str, vm_states: tuple) -> None:
    if inst.vm_state not in vm_states:
        raise invalid_state(name, inst.uuid, "vm_state", inst.vm_state)
    if inst.task_state is not None:
        raise invalid_state(name, inst.uuid, "task_state", inst.task_state)


# --- actions with a compute canvas ---------------------------------------------------------------------------------

@rpc("instance_op")
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
        inst = _locked_instance(s, uuid)
        _check_state(inst, req.get("api_name") or record_name(action), rule["from"])
        if not inst.host:
            raise ConductorError(409, f"Instance {uuid} is not ready")
        if action == "soft_delete":
            values["deleted_at"] = utcnow()
        if action == "restore":
            values["deleted_at"] = None
        if not db_write.cas_instance(s, uuid, expected_task_state=None, expected_vm_states=rule["from"],
                                     task_state=rule["task_state"], **values):
            raise ConductorError(409, f"Cannot '{record_name(action)}' instance {uuid}: it changed state "
                                      f"concurrently; retry the request.")
        db_write.start_action(s, uuid, record_name(action), req["request_id"], req.get("user_id"),
                              req.get("project_id"))
        ctx = new_ctx(uuid, req["request_id"], action, host=inst.host, task_state=rule["task_state"],
                      prior_vm_state=inst.vm_state, **(req.get("params") or {}))
    chain(sig("stratus.compute.instance_op", ctx), sig("stratus.conductor.finish_instance_op")).apply_async()
    return {"instance_uuid": uuid}


def _target_vm_state(ctx: dict) -> str:
    target = states.MORE_ACTIONS[ctx["action"]]["to"]
    if target is not None:
        return target
    prior = ctx.get("prior_vm_state")
    if ctx["action"] == "rebuild":  # Nova: a stopped server is stopped again after its rebuild; ERROR → ACTIVE
        return states.STOPPED if prior == states.STOPPED else states.ACTIVE
    return prior


@celery.task(name="stratus.conductor.finish_instance_op", ignore_result=True)
def finish_instance_op(ctx: dict) -> None:
    uuid, action = ctx["instance_uuid"], ctx["action"]
    target = _target_vm_state(ctx)
    with write_session() as s:
        done = db_write.cas_instance(s, uuid, expected_task_state=ctx["task_state"], vm_state=target,
                                     task_state=None, power_state=ctx.get("power_state", states.POWER_AFTER[target]))
        if action == "snapshot":
            finish_snapshot_image(s, ctx)
        if done:
            db_write.record_event(s, uuid, ctx["request_id"], f"compute_{action}_instance", ctx.get("t0"),
                                  "Success", host=ctx.get("host"))
        else:
            LOG.info("finish_instance_op %s for %s lost its race; nothing written", action, uuid)


def finish_snapshot_image(s, ctx: dict) -> bool:
    """The compute step stored the snapshot's data; the image becomes active (as Glance does after an upload).
    False when the image was deleted meanwhile."""
    image_id = ctx["image_id"]
    done = s.execute(update(Image).where(Image.id == image_id, Image.status.in_(("queued", "saving"))).values(
        status="active", size=ctx["image_size"], checksum=ctx["image_md5"], os_hash_algo="sha256",
        os_hash_value=ctx["image_sha256"], updated_at=utcnow())).rowcount
    if not done:  # the image was deleted while the snapshot was taken
        image_store.delete(image_id)
    return bool(done)


def snapshot_failed(ctx: dict) -> None:
    """A failed createImage leaves no image behind (Nova deletes the snapshot image it created)."""
    with write_session() as s:
        s.execute(delete(Image).where(Image.id == ctx["image_id"], Image.status.in_(("queued", "saving"))))
    image_store.delete(ctx["image_id"])


@celery.task(name="stratus.conductor.record_op_event", ignore_result=True)
def record_op_event(ctx: dict) -> None:
    """End of an action that changes no state (trigger_crash_dump, a live migration's abort / force-complete):
    record its event, failed when the compute step reports an ``error`` (e.g. the migration had already ended;
    the migration's own canvas records its outcome)."""
    error = ctx.get("error")
    with write_session() as s:
        db_write.record_event(s, ctx["instance_uuid"], ctx["request_id"], f"compute_{ctx['action']}",
                              ctx.get("t0"), "Error" if error else "Success", host=ctx.get("host"), details=error)


@rpc("trigger_crash_dump")
def trigger_crash_dump(req: dict) -> dict:
    """Nova: allowed in ACTIVE, PAUSED, RESCUED with no task; no task_state is set while the NMI is sent."""
    uuid = req["instance_uuid"]
    require_driver("trigger_crash_dump", "trigger_crash_dump")
    with write_session() as s:
        inst = _locked_instance(s, uuid)
        _check_state(inst, "trigger_crash_dump", (states.ACTIVE, states.PAUSED, states.RESCUED))
        if not inst.host:
            raise ConductorError(409, f"Instance {uuid} is not ready")
        db_write.start_action(s, uuid, "trigger_crash_dump", req["request_id"], req.get("user_id"),
                              req.get("project_id"))
        ctx = new_ctx(uuid, req["request_id"], "trigger_crash_dump", host=inst.host, task_state=None)
    chain(sig("stratus.compute.instance_op", ctx), sig("stratus.conductor.record_op_event")).apply_async()
    return {"instance_uuid": uuid}


# --- metadata ------------------------------------------------------------------------------------------------------

_METADATA_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED)


def metadata_limit(s, project_id: str) -> int:
    limits = db_write.quota_limits(s, project_id)
    return int(limits.get("metadata_items", get_settings().quota_metadata_items))


def check_metadata_quota(s, project_id: str, count: int) -> None:
    limit = metadata_limit(s, project_id)
    if 0 <= limit < count:
        raise ConductorError(403, f"Maximum number of metadata items exceeds {limit}")


@rpc("update_metadata")
def update_metadata(uuid: str, op: str, items: dict | None = None, key: str | None = None) -> dict:
    """op: "replace" (PUT all), "merge" (POST), "set_key" (PUT one), "delete_key" (DELETE one)."""
    with write_session() as s:
        inst = _locked_instance(s, uuid)
        _check_state(inst, "delete metadata" if op == "delete_key" else "update metadata", _METADATA_STATES)
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
            check_metadata_quota(s, inst.project_id, len(new))
        if not db_write.cas_instance(s, uuid, expected_task_state=None, expected_vm_states=_METADATA_STATES,
                                     metadata_items=new):
            raise ConductorError(409, f"Cannot 'update metadata' instance {uuid}: it changed state concurrently; "
                                      f"retry the request.")
    return new


# --- tags ----------------------------------------------------------------------------------------------------------

_TAG_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED, states.SHELVED,
               states.SHELVED_OFFLOADED)


@rpc("update_tags")
def update_tags(uuid: str, op: str, tags: list[str] | None = None) -> dict:
    """op: "replace" (PUT all), "add" (PUT one), "delete" (DELETE one), "delete_all"."""
    names = {"replace": "update tags", "add": "update tag", "delete": "delete tag", "delete_all": "delete tags"}
    with write_session() as s:
        inst = _locked_instance(s, uuid)
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
                if len(have) + 1 > MAX_TAGS:
                    raise ConductorError(400, f"The number of tags exceeded the per-server limit {MAX_TAGS}")
                s.add(InstanceTag(instance_uuid=uuid, tag=tags[0]))
                created = True
        elif op == "delete":
            if tags[0] not in have:
                raise ConductorError(404, f"Instance {uuid} has no tag '{tags[0]}'")
            s.execute(delete(InstanceTag).where(InstanceTag.instance_uuid == uuid, InstanceTag.tag == tags[0]))
        s.flush()
        result = sorted(s.scalars(select(InstanceTag.tag).where(InstanceTag.instance_uuid == uuid)))
        db_write.cas_instance(s, uuid, updated_at=utcnow())
    return {"tags": result, "created": created}


# --- soft delete reclaim -------------------------------------------------------------------------------------------

def reclaim(uuid: str, request_id: str) -> bool:
    """Hard-delete one expired soft-deleted instance (the normal terminate | finish_delete canvas)."""
    with write_session() as s:
        inst = db_write.get_instance(s, uuid, lock=True)
        if inst is None or inst.deleted or inst.vm_state != states.SOFT_DELETED or inst.task_state is not None:
            return False
        if not db_write.cas_instance(s, uuid, expected_task_state=None, expected_vm_states=(states.SOFT_DELETED,),
                                     task_state=states.DELETING):
            return False
        host = inst.host
    ctx = new_ctx(uuid, request_id, "delete", host=host, task_state=states.DELETING)
    if host:
        Chain(("stratus.compute.terminate", "stratus.conductor.finish_delete"), ctx).apply_async()
    else:
        sig("stratus.conductor.finish_delete", ctx).apply_async()
    return True
