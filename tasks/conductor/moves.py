"""Conductor side of moves between hosts and flavors: resize (+ confirm/revert), cold and live migration,
evacuate, shelve / shelveOffload / unshelve.

The conductor picks the destination synchronously (scheduler.manager over the same host states the scheduler
task loads, as Nova's conductor calls select_destinations) and claims it in the transaction that CASes the
task_state and writes the Migration row. While a move is in flight the source's allocation belongs to the
migration's uuid (Nova's migration-consumer allocations), so a revert or failure can give it back exactly.
The compute canvas is a chain of ``stratus.compute.move_op`` steps, each on the host its ``ops`` entry names,
ended by ``stratus.conductor.finish_move``.
"""
from __future__ import annotations

import logging
import types
from typing import Any

from celery import chain
from sqlalchemy import delete, select

from core import image_store, states
from core.db import write_session
from core.errors import ConductorError
from core.models import ComputeNode, Flavor, Image, Instance, Migration, utcnow
from core.power_state import PowerState
from core.services import compute_service_up
from core.settings import get_settings
from core.writes.instances import add_fault, cas_instance, get_instance, record_event, remember_canvas, start_action
from core.writes.quotas import reserve_resize
from core.writes.resources import IN_FLIGHT_MIGRATIONS, cas_migration, claim, rekey_allocation, release_allocation
from drivers import capability
from drivers.base import DriverError
from scheduler.host_state import RequestSpec
from scheduler.manager import NoValidHost, select_destinations
from tasks.common import Chain, new_ctx, sig
from tasks.conductor import specs, transfer
from tasks.conductor.common import (check_state, finish_snapshot_image, invalid_state, locked_instance, require_driver,
                                    rpc, snapshot_failed)
from tasks.messaging.celery_app import celery
from tasks.scheduler import load_host_states

LOG = logging.getLogger(__name__)

# action -> allowed vm_states, task_state while moving, Migration.migration_type, instance-action name
MOVES: dict[str, dict[str, Any]] = {
    "resize": {"from": (states.ACTIVE, states.STOPPED), "task_state": "resize_migrating", "type": "resize",
               "record": "resize", "api": "resize"},
    "migrate": {"from": (states.ACTIVE, states.STOPPED), "task_state": "resize_migrating", "type": "migration",
                "record": "migrate", "api": "migrate"},
    "live_migrate": {"from": (states.ACTIVE, states.PAUSED), "task_state": "migrating", "type": "live-migration",
                     "record": "live-migration", "api": "os-migrateLive"},
    "evacuate": {"from": (states.ACTIVE, states.STOPPED, states.ERROR), "task_state": "rebuilding",
                 "type": "evacuation", "record": "evacuate", "api": "evacuate"},
    "unshelve": {"from": (states.SHELVED_OFFLOADED,), "task_state": "unshelving", "type": None,
                 "record": "unshelve", "api": "unshelve"},
}


def _flavor_snapshot(flavor: Flavor) -> dict:
    return {"id": flavor.flavorid, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.memory_mb,
            "disk": flavor.root_gb, "ephemeral": flavor.ephemeral_gb, "swap": flavor.swap,
            "extra_specs": flavor.extra_specs or {}}


def pick_and_claim(s, inst, flavor: dict, requested_host: str | None, same_host_ok: bool,
                   availability_zone: str | None = None) -> str:
    """Choose the move's destination as the scheduler would (``requested_host`` only, when given) and claim
    ``flavor``'s resources there; returns the host, or a 400 ConductorError when none fits."""
    ignore = set() if same_host_ok or not inst.host else {inst.host}
    spec = RequestSpec(instance_uuid=inst.uuid, vcpus=flavor["vcpus"], memory_mb=flavor["ram"],
                       root_gb=flavor["disk"],
                       availability_zone=availability_zone,
                       ignore_hosts=frozenset(ignore), scheduler_hints=inst.scheduler_hints or {})
    hosts = load_host_states(s)
    if requested_host is not None:
        hosts = [h for h in hosts if h.host == requested_host]
        if not hosts:
            raise ConductorError(400, f"Compute host {requested_host} could not be found.")
    try:
        selection = select_destinations(hosts, spec, max_attempts=len(hosts) or 1)
    except NoValidHost as exc:
        raise ConductorError(400, str(exc)) from None
    wanted = types.SimpleNamespace(uuid=inst.uuid, vcpus=flavor["vcpus"], memory_mb=flavor["ram"],
                                   root_gb=flavor["disk"])
    for host in selection.hosts:
        if claim(s, wanted, host):
            return host
    raise ConductorError(400, "No valid host was found. All chosen hosts were filled by concurrent requests "
                              "before the claim.")


def _moves_disks() -> bool:
    return capability(get_settings().compute_driver, "supports_migrate_to_other_host")


def movable_instance(s, uuid: str, rule: dict, needs_host: bool = True) -> Instance:
    """The instance, locked, if the move ``rule`` may start from its states (Nova's 404 / 409 otherwise)."""
    inst = locked_instance(s, uuid)
    check_state(inst, rule["api"], rule["from"])
    if needs_host and not inst.host:
        raise ConductorError(409, f"Instance {uuid} is not ready")
    return inst


@rpc("start_move", session=False)
def start_move(req: dict) -> dict:
    """resize, migrate, evacuate, unshelve (live migration: tasks/conductor/live.py)."""
    uuid, action = req["instance_uuid"], req["action"]
    rule = MOVES[action]
    require_driver(action, rule["api"])
    requested = req.get("host")
    with write_session() as s:
        inst = movable_instance(s, uuid, rule, needs_host=action != "unshelve")
        source = inst.host
        in_place_only = action in ("resize", "migrate") and not _moves_disks()
        if in_place_only and (action == "migrate" or not get_settings().allow_resize_to_same_host):
            driver = get_settings().compute_driver
            raise ConductorError(409, f"The {driver} compute driver cannot move an instance's disks to another host: "
                                      f"only a resize on the same host is possible (allow_resize_to_same_host).")
        if requested is not None and requested == source:
            raise ConductorError(400, "The target host can't be the same one.")
        if action == "evacuate" and compute_service_up(s, source):
            raise ConductorError(400, f"Compute service of {source} is still in use.")
        if action == "migrate" and not compute_service_up(s, source):
            raise ConductorError(400, f"Compute service of {source} is unavailable at this time.")
        old_flavor = dict(inst.flavor_snapshot or {})
        new_flavor = old_flavor
        if action == "resize":
            flavor = s.scalars(select(Flavor).where(Flavor.flavorid == req["flavor_id"],
                                                    Flavor.disabled.is_(False))).first()
            if flavor is None:
                raise ConductorError(400, f"Flavor {req['flavor_id']} could not be found.")
            if flavor.flavorid == old_flavor.get("id"):
                raise ConductorError(400, "When resizing, instances must change flavor!")
            if flavor.root_gb < (old_flavor.get("disk") or 0):
                raise ConductorError(400, "Resizing to a smaller disk flavor is not allowed.")
            new_flavor = _flavor_snapshot(flavor)
            reserve_resize(s, inst, old_flavor, new_flavor)
        migration = None
        if rule["type"] is not None:
            migration = Migration(instance_uuid=uuid, migration_type=rule["type"], status="migrating",
                                  source_compute=source, source_node=source, old_flavor=old_flavor,
                                  new_flavor=new_flavor, old_instance_type_id=inst.flavor_id,
                                  new_instance_type_id=flavor.id if action == "resize" else inst.flavor_id,
                                  user_id=req.get("user_id"), project_id=inst.project_id)
            s.add(migration)
            s.flush()
            rekey_allocation(s, uuid, migration.uuid)  # the source's resources, until confirm/revert/finish
        boot_image_id = _shelved_image(s, inst) if action == "unshelve" else None
        # unshelve (2.77/2.91) may name a new zone or null (unpin); the server stays pinned to it afterwards
        zone = req["availability_zone"] if "availability_zone" in req else inst.requested_availability_zone
        # Nova's allow_resize_to_same_host: the source is a candidate like any other host; chosen, it holds the
        # old flavor's resources (the migration's allocation) and the new one's (the instance's) until confirm/revert
        same_host_ok = action == "resize" and get_settings().allow_resize_to_same_host
        if in_place_only:
            requested = source  # the disks stay where they are
        dest = pick_and_claim(s, inst, new_flavor, requested, same_host_ok=same_host_ok, availability_zone=zone)
        if migration is not None:
            migration.dest_compute = migration.dest_node = dest
        # the disk travels in a hidden image when the hosts share none (tasks/conductor/transfer.py)
        transfer_image_id = transfer.create(s, uuid, migration.uuid) \
            if transfer.needed(action, source, dest) else None
        # evacuate rebuilds the guest with a new admin password (stored encrypted, as at create)
        secret = {"admin_pass_enc": req["admin_pass_enc"]} if req.get("admin_pass_enc") else {}
        if "availability_zone" in req:
            secret["requested_availability_zone"] = zone
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=rule["from"],
                            task_state=rule["task_state"], **secret):
            raise ConductorError(409, f"Cannot '{rule['api']}' instance {uuid}: it changed state concurrently; "
                                      f"retry the request.")
        start_action(s, uuid, rule["record"], req["request_id"], req.get("user_id"), req.get("project_id"))
        ops = {"resize": [["resize_source", source], ["resize_dest", dest]],
               "migrate": [["resize_source", source], ["resize_dest", dest]],
               "evacuate": [["spawn_here", dest]], "unshelve": [["spawn_here", dest]]}[action]
        ctx = new_ctx(uuid, req["request_id"], action, host=ops[0][1], ops=ops, task_state=rule["task_state"],
                      source=source, dest=dest, final_host=dest, migration_uuid=migration.uuid if migration else None,
                      prior_vm_state=inst.vm_state, new_flavor=new_flavor, boot_image_id=boot_image_id,
                      transfer_image_id=transfer_image_id,
                      power_on=(inst.vm_state not in (states.STOPPED, states.SHELVED_OFFLOADED)
                                or action == "unshelve") and not req.get("stop_on_destination"))
        try:  # the destination's step reads no DB: the spec (its user data sealed for dest) is in the message
            ctx["spec"] = specs.spec_message(s, uuid, dest, image_id=boot_image_id)
        except (DriverError, specs.NoSealingKey) as exc:
            raise ConductorError(409, str(exc)) from None
        remember_canvas(s, ctx, move_steps(ctx))
    run_ops(ctx)
    return {"instance_uuid": uuid, "host": dest}


def _shelved_image(s, inst) -> str | None:
    """The snapshot shelve took (None for a server shelved without one); 409 if it was deleted since."""
    image_id = (inst.system_metadata or {}).get("shelved_image_id")
    if image_id is None:
        return None
    if s.scalars(select(Image.id).where(Image.id == image_id, Image.status == "active")).first() is None:
        raise ConductorError(409, f"Cannot unshelve instance {inst.uuid}: its shelved image {image_id} could not "
                                  f"be found.")
    return image_id


def drop_shelved_image(s, inst) -> tuple[str | None, dict]:
    """After unshelve or delete: delete the snapshot shelve took (Nova does); returns its id (the caller removes
    its data after the commit) and the system metadata without the shelve keys."""
    sysmeta = {k: v for k, v in (inst.system_metadata or {}).items()
               if k not in ("shelved_image_id", "shelved_at", "shelved_host")}
    image_id = (inst.system_metadata or {}).get("shelved_image_id")
    if image_id:
        s.execute(delete(Image).where(Image.id == image_id))
    return image_id, sysmeta


def move_steps(ctx: dict, finish: str = "stratus.conductor.finish_move") -> list[str]:
    """The move's compute canvas: one ``move_op`` step per ``ctx["ops"]`` entry, then ``finish``."""
    return ["stratus.compute.move_op"] * len(ctx["ops"]) + [finish]


def run_ops(ctx: dict) -> None:
    """Start the move's compute canvas (``move_steps``; the conductor keeps it on the action beforehand, in the
    transaction that set the task_state: ``remember_canvas``)."""
    Chain(move_steps(ctx), ctx).apply_async()


def _latest_migration(s, uuid: str, status: str) -> Migration | None:
    return s.scalars(select(Migration).where(Migration.instance_uuid == uuid, Migration.status == status)
                     .order_by(Migration.id.desc())).first()


def _resized_instance(s, uuid: str, api: str):
    inst = locked_instance(s, uuid)
    check_state(inst, api, (states.RESIZED,))
    mig = _latest_migration(s, uuid, "finished")
    if mig is None:
        raise ConductorError(400, f"Instance {uuid} has not been resized.")
    return inst, mig


@rpc("confirm_resize", session=False)
def confirm_resize(req: dict) -> dict:
    """The new host keeps the server: the source's resources are freed now, its guest removed by a compute task."""
    uuid = req["instance_uuid"]
    with write_session() as s:
        inst, mig = _resized_instance(s, uuid, "confirmResize")
        target = states.STOPPED if inst.power_state == PowerState.SHUTDOWN else states.ACTIVE
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=(states.RESIZED,),
                            vm_state=target):
            raise ConductorError(409, f"Cannot 'confirmResize' instance {uuid}: it changed state concurrently.")
        release_allocation(s, mig.uuid)
        mig.status, mig.updated_at = "confirmed", utcnow()
        dropped = transfer.drop(s, mig.uuid)  # (finish_move dropped it already, unless that step was lost)
        start_action(s, uuid, "confirmResize", req["request_id"], req.get("user_id"),
                     req.get("project_id"))
        # the source drops what it kept for a revert: the old guest, or on the same host only its backup
        ctx = new_ctx(uuid, req["request_id"], "confirm_resize", host=mig.source_compute, task_state=None,
                      ops=[["confirm_source", mig.source_compute]], source=mig.source_compute,
                      dest=mig.dest_compute)
    transfer.remove_data(dropped)
    chain(sig("stratus.compute.move_op", ctx), sig("stratus.conductor.record_op_event")).apply_async()
    return {}


@rpc("revert_resize", session=False)
def revert_resize(req: dict) -> dict:
    uuid = req["instance_uuid"]
    with write_session() as s:
        inst, mig = _resized_instance(s, uuid, "revertResize")
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=(states.RESIZED,),
                            task_state="resize_reverting"):
            raise ConductorError(409, f"Cannot 'revertResize' instance {uuid}: it changed state concurrently.")
        mig.status, mig.updated_at = "reverting", utcnow()
        dropped = transfer.drop(s, mig.uuid)
        start_action(s, uuid, "revertResize", req["request_id"], req.get("user_id"),
                     req.get("project_id"))
        # resized on its own host: no guest to remove elsewhere, the source's revert replaces the resized one
        ops = [["revert_source", mig.source_compute]]
        if mig.dest_compute != mig.source_compute:
            ops.insert(0, ["revert_dest", mig.dest_compute])
        ctx = new_ctx(uuid, req["request_id"], "revert_resize", host=ops[0][1], task_state="resize_reverting",
                      ops=ops,
                      source=mig.source_compute, dest=mig.dest_compute, final_host=mig.source_compute,
                      migration_uuid=mig.uuid,
                      power_on=inst.power_state != PowerState.SHUTDOWN)
        remember_canvas(s, ctx, move_steps(ctx))
    transfer.remove_data(dropped)
    run_ops(ctx)
    return {}


# --- shelve --------------------------------------------------------------------------------------------------------

_SHELVE_FROM = (states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED)


@rpc("shelve", session=False)
def shelve(req: dict) -> dict:
    """shelve (offloaded at once when shelved_offload_time is 0, Nova's default), shelveOffload, or unshelve of
    a SHELVED (not offloaded) server, which just starts it again on its host."""
    uuid, action = req["instance_uuid"], req["action"]
    allowed, task_state, api = {"shelve": (_SHELVE_FROM, "shelving", "shelve"),
                                "shelve_offload": ((states.SHELVED,), "shelving_offloading", "shelveOffload"),
                                "unshelve_on_host": ((states.SHELVED,), "unshelving", "unshelve")}[action]
    with write_session() as s:
        inst = get_instance(s, uuid, lock=True)
        if inst is None or inst.deleted:
            raise ConductorError(404, f"Instance {uuid} could not be found.")
        if inst.vm_state not in allowed:
            raise invalid_state(api, uuid, "vm_state", inst.vm_state)
        if inst.task_state is not None:
            raise invalid_state(api, uuid, "task_state", inst.task_state)
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=allowed,
                            task_state=task_state):
            raise ConductorError(409, f"Cannot '{api}' instance {uuid}: it changed state concurrently.")
        start_action(s, uuid, api, req["request_id"], req.get("user_id"), req.get("project_id"))
        offload = action == "shelve_offload" or (action == "shelve" and get_settings().shelved_offload_time == 0)
        op = {"shelve": "shelve_offload" if offload else "shelve", "shelve_offload": "offload",
              "unshelve_on_host": "power_on"}[action]
        ctx = new_ctx(uuid, req["request_id"], action, host=inst.host, task_state=task_state,
                      ops=[[op, inst.host]], offload=offload, source=inst.host, dest=inst.host,
                      final_host=inst.host, image_id=req.get("image_id") if action == "shelve" else None)
        ctx["image_disk_format"] = specs.image_disk_format(s, ctx["image_id"])
        remember_canvas(s, ctx, move_steps(ctx))
    run_ops(ctx)
    return {}


# Statuses of a live migration whose canvas may still end it (Nova's: queued → preparing → running).
LIVE_MIGRATION_ACTIVE = ("accepted", "queued", "preparing", "running")


# --- completion ----------------------------------------------------------------------------------------------------

@celery.task(name="stratus.conductor.finish_move", ignore_result=True)
def finish_move(ctx: dict) -> None:
    uuid, action = ctx["instance_uuid"], ctx["action"]
    power = ctx.get("power_state", PowerState.NOSTATE)
    on_dest = {"host": ctx.get("dest"), "node": ctx.get("dest"), "power_state": power}
    dropped_image, transfers = None, []
    if ctx.get("transfer_image_id"):  # the destination has the disk now: the transfer image goes, whatever follows
        with write_session() as s:
            transfers = transfer.drop(s, ctx["migration_uuid"])
        transfer.remove_data(transfers)
    with write_session() as s:
        mig = s.scalars(select(Migration).where(Migration.uuid == ctx["migration_uuid"])).first() \
            if ctx.get("migration_uuid") else None
        inst = get_instance(s, uuid, lock=True)
        if inst is None or inst.deleted or inst.task_state != ctx["task_state"] or (
                action == "live_migrate" and mig.status not in LIVE_MIGRATION_ACTIVE):
            LOG.info("finish_move %s for %s lost its race; nothing written", action, uuid)
            if inst is None or inst.deleted or inst.task_state == states.DELETING:
                _deleted_during_move(s, ctx)
            return
        event, values = f"compute_{action}_instance", {}
        if action in ("resize", "migrate"):
            flavor = ctx["new_flavor"]
            row = s.scalars(select(Flavor.id).where(Flavor.flavorid == flavor["id"])).first()
            values = {**on_dest, "vm_state": states.RESIZED, "flavor_snapshot": flavor, "vcpus": flavor["vcpus"],
                      "memory_mb": flavor["ram"], "root_gb": flavor["disk"],
                      **({"flavor_id": row} if row is not None else {})}
            event, status = "compute_finish_resize", "finished"
        elif action == "revert_resize":
            old = mig.old_flavor
            row = s.scalars(select(Flavor.id).where(Flavor.flavorid == old["id"])).first()
            values = {"host": ctx["source"], "node": ctx["source"], "power_state": power,
                      "vm_state": states.ACTIVE if ctx["power_on"] else states.STOPPED, "flavor_snapshot": old,
                      "vcpus": old["vcpus"], "memory_mb": old["ram"], "root_gb": old["disk"],
                      **({"flavor_id": row} if row is not None else {})}
            release_allocation(s, uuid)  # the destination's claim
            rekey_allocation(s, mig.uuid, uuid)  # the source's resources are the instance's again
            reserve_resize(s, inst, mig.old_flavor, mig.new_flavor, sign=-1)
            event, status = "compute_finish_revert_resize", "reverted"
        elif action == "live_migrate" and ctx.get("aborted"):
            # live_migration_abort: the guest still runs on the source, which gets its resources back
            values = {"power_state": power, "vm_state": ctx["prior_vm_state"]}
            release_allocation(s, uuid)  # the destination's claim
            rekey_allocation(s, mig.uuid, uuid)
            event, status = "compute_live_migration", "cancelled"
        elif action in ("live_migrate", "evacuate"):
            # evacuate: the guest runs again unless it was stopped or the caller asked 2.95's stop on arrival
            target = ctx["prior_vm_state"] if action == "live_migrate" else (
                states.ACTIVE if ctx["power_on"] else states.STOPPED)
            values = {**on_dest, "vm_state": target}
            release_allocation(s, mig.uuid)
            event = "compute_live_migration" if action == "live_migrate" else "compute_rebuild_instance"
            status = "completed" if action == "live_migrate" else "done"
        elif action == "unshelve":
            values = {**on_dest, "vm_state": states.ACTIVE, "availability_zone": _az(s, ctx["dest"])}
            dropped_image, values["system_metadata"] = drop_shelved_image(s, inst)
            status = None
        elif action in ("shelve", "shelve_offload"):
            values = {"vm_state": states.SHELVED_OFFLOADED if ctx["offload"] else states.SHELVED,
                      "power_state": PowerState.NOSTATE if ctx["offload"] else power}
            if ctx.get("image_id") and finish_snapshot_image(s, ctx):
                values["system_metadata"] = {**(inst.system_metadata or {}), "shelved_image_id": ctx["image_id"],
                                             "shelved_at": utcnow().isoformat(), "shelved_host": ctx["source"]}
            if ctx["offload"]:
                values.update(host=None, node=None)
                release_allocation(s, uuid)
            status = None
        else:  # unshelve_on_host: a SHELVED (not offloaded) server starts again where it is
            values = {"vm_state": states.ACTIVE, "power_state": power}
            dropped_image, values["system_metadata"] = drop_shelved_image(s, inst)
            status = None
        cas_instance(s, uuid, expected_task_state=ctx["task_state"], task_state=None, **values)
        if mig is not None and status and action == "live_migrate":
            cas_migration(s, mig.uuid, LIVE_MIGRATION_ACTIVE, status)
        elif mig is not None and status:
            mig.status, mig.updated_at = status, utcnow()
        record_event(s, uuid, ctx["request_id"], event, ctx.get("t0"), "Success", host=ctx.get("host"))
    if dropped_image:
        image_store.delete(dropped_image)


def _deleted_during_move(s, ctx: dict) -> None:
    """The instance was deleted while it moved: the delete destroyed the guest where the instance was then (or
    nowhere: a SHELVED_OFFLOADED server has no host), perhaps before this move made one on its destination. As
    finish_boot does for a boot, destroy it on every host of the move, and finish the move's action (failed)."""
    uuid = ctx["instance_uuid"]
    record_event(s, uuid, ctx["request_id"], f"compute_{ctx['action']}_instance", ctx.get("t0"), "Error",
                 host=ctx.get("host"), details="The instance was deleted during the operation.")
    for host in sorted({h for h in (ctx.get("source"), ctx.get("dest")) if h}):
        LOG.info("instance %s was deleted during its %s; cleaning up on %s", uuid, ctx["action"], host)
        sig("stratus.compute.terminate", {**ctx, "host": host, "action": "cleanup"}).apply_async()


def _az(s, host: str) -> str:
    return s.scalar(select(ComputeNode.availability_zone).where(ComputeNode.host == host)) or "nova"


def abandon_moves(s, uuid: str, current_host: str | None) -> list[str]:
    """The instance is being deleted: free what its unfinished moves hold; return the other hosts that may
    still have a guest of it."""
    hosts: set[str] = set()
    for mig in s.scalars(select(Migration).where(Migration.instance_uuid == uuid, Migration.status.in_(
            IN_FLIGHT_MIGRATIONS))):
        release_allocation(s, mig.uuid)
        hosts.update(h for h in (mig.source_compute, mig.dest_compute) if h)
        if mig.migration_type == "resize" and mig.status == "migrating":
            # the quota already counts the new flavor; the row still has the old one, which the delete gives back
            reserve_resize(s, get_instance(s, uuid), mig.old_flavor, mig.new_flavor, sign=-1)
        mig.status = "confirmed" if mig.status == "finished" else "error"
        mig.updated_at = utcnow()
    hosts.discard(current_host or "")
    return sorted(hosts)


def move_failed(ctx: dict, message: str, details: str) -> None:
    """A move step failed (called from boot.step_failed): give back the destination's claim and the
    source's resources, record the fault, and leave the server where it is (ERROR for resize, migrate and
    evacuate as Nova does; a failed live migration or unshelve keeps its previous state)."""
    uuid, action = ctx["instance_uuid"], ctx["action"]
    if action == "shelve" and ctx.get("image_id"):
        snapshot_failed(ctx)  # Nova deletes the snapshot image of a failed shelve
    if ctx.get("transfer_image_id"):
        with write_session() as s:
            transfers = transfer.drop(s, ctx["migration_uuid"])
        transfer.remove_data(transfers)
    with write_session() as s:
        inst = get_instance(s, uuid, lock=True)
        if inst is None or inst.deleted or inst.task_state != ctx.get("task_state"):
            return
        mig = s.scalars(select(Migration).where(Migration.uuid == ctx["migration_uuid"])).first() \
            if ctx.get("migration_uuid") else None
        if action == "live_migrate" and mig is not None and mig.status not in LIVE_MIGRATION_ACTIVE:
            return  # cancelled while queued; the conductor already rolled it back
        values: dict[str, Any] = {}
        if action in ("resize", "migrate", "evacuate", "live_migrate", "unshelve") and ctx.get("dest"):
            release_allocation(s, uuid)  # the destination's claim
            if mig is not None:
                rekey_allocation(s, mig.uuid, uuid)
            if action == "resize":
                reserve_resize(s, inst, mig.old_flavor, mig.new_flavor, sign=-1)
            if action in ("resize", "migrate", "evacuate"):
                values["vm_state"] = states.ERROR
        if action == "revert_resize":
            values["vm_state"] = states.ERROR
            if mig is not None:  # the migration ends here: the source's resources it held are free again
                release_allocation(s, mig.uuid)
        if mig is not None and action == "live_migrate":
            cas_migration(s, mig.uuid, LIVE_MIGRATION_ACTIVE, "error")
        elif mig is not None:
            mig.status, mig.updated_at = "error", utcnow()
        cas_instance(s, uuid, expected_task_state=ctx.get("task_state"), task_state=None, **values)
        add_fault(s, uuid, 500, message, details, ctx.get("host"))
        record_event(s, uuid, ctx["request_id"], f"compute_{action}_instance", ctx.get("t0"), "Error",
                     host=ctx.get("host"), traceback=details, details=message)


MOVE_ACTIONS = (*MOVES, "revert_resize", "shelve", "shelve_offload", "unshelve_on_host")
