"""Conductor side of live migration and its management (os-migrateLive; 2.22 force_complete, 2.24 / 2.65 abort).

A live migration's Migration row goes ``accepted`` (pre-checks pending) → ``queued`` (destination claimed, the
source's resources held by the migration's uuid) → ``running`` (the driver copies; the compute step reports it)
→ ``completed`` / ``cancelled`` / ``error``. Every transition is a CAS on the expected status
(cas_migration), so a late step of a cancelled migration writes nothing.

Below 2.34 the pre-checks (source service up, destination not the source, scheduler + claim) run inside the API's
call and a failure is its 400. From 2.34 they run in ``live_migration_prechecks``, a conductor task after the 202:
a failure leaves the migration ``error``, an instance fault and a failed ``conductor_live_migrate_instance`` event,
and the server in its previous state (Nova's asynchronous pre-checks).
"""
from __future__ import annotations

import logging

from celery import chain
from sqlalchemy import select

from core.db import write_session
from core.errors import ConductorError
from core.models import Migration
from core.services import compute_service_up
from core.writes.instances import add_fault, cas_instance, get_instance, record_event, start_action
from core.writes.resources import cas_migration, rekey_allocation, release_allocation
from drivers.base import DriverError
from tasks.common import new_ctx, sig
from tasks.conductor import specs
from tasks.conductor.common import invalid_state, locked_instance, require_driver, rpc
from tasks.conductor.moves import MOVES, movable_instance, pick_and_claim, run_ops
from tasks.messaging.celery_app import celery

LOG = logging.getLogger(__name__)
RULE = MOVES["live_migrate"]


@rpc("live_migrate", session=False)
def live_migrate(req: dict) -> dict:
    uuid = req["instance_uuid"]
    require_driver("live_migrate", RULE["api"])
    with write_session() as s:
        inst = movable_instance(s, uuid, RULE)
        flavor = dict(inst.flavor_snapshot or {})
        mig = Migration(instance_uuid=uuid, migration_type="live-migration", status="accepted",
                        source_compute=inst.host, source_node=inst.host, dest_host=req.get("host"),
                        old_flavor=flavor, new_flavor=flavor, old_instance_type_id=inst.flavor_id,
                        new_instance_type_id=inst.flavor_id, user_id=req.get("user_id"), project_id=inst.project_id)
        s.add(mig)
        s.flush()
        mig_id = mig.id
        if not cas_instance(s, uuid, expected_task_state=None, expected_vm_states=RULE["from"],
                            task_state=RULE["task_state"]):
            raise ConductorError(409, f"Cannot '{RULE['api']}' instance {uuid}: it changed state concurrently; "
                                      f"retry the request.")
        start_action(s, uuid, RULE["record"], req["request_id"], req.get("user_id"), req.get("project_id"))
        ctx = new_ctx(uuid, req["request_id"], "live_migrate", host=inst.host, ops=[["live_migrate", inst.host]],
                      task_state=RULE["task_state"], source=inst.host, dest=None, final_host=None,
                      migration_uuid=mig.uuid, prior_vm_state=inst.vm_state, new_flavor=flavor,
                      requested_host=req.get("host"), block_migration=req.get("block_migration"))
        if not req.get("async_checks"):
            _precheck_and_claim(s, inst, mig, ctx)  # a ConductorError rolls all of this back: the API's 400
    if req.get("async_checks"):
        sig("stratus.conductor.live_migration_prechecks", ctx).apply_async()
    else:
        run_ops(ctx)
    return {"instance_uuid": uuid, "migration_id": mig_id}


def _precheck_and_claim(s, inst, mig: Migration, ctx: dict) -> None:
    """Nova's LiveMigrationTask checks, then the destination's claim; the migration becomes ``queued``."""
    source, requested = ctx["source"], ctx.get("requested_host")
    if not compute_service_up(s, source):
        raise ConductorError(400, f"Compute service of {source} is unavailable at this time.")
    if requested is not None and requested == source:
        raise ConductorError(400, "The target host can't be the same one.")
    rekey_allocation(s, inst.uuid, mig.uuid)  # the source's resources, until the migration ends
    try:
        dest = pick_and_claim(s, inst, ctx["new_flavor"], requested, same_host_ok=False,
                              availability_zone=inst.requested_availability_zone)
    except ConductorError:
        rekey_allocation(s, mig.uuid, inst.uuid)
        raise
    try:  # the destination's steps read no DB: the spec (its user data sealed for dest) is in the message
        spec = specs.spec_message(s, inst.uuid, dest)
    except (DriverError, specs.NoSealingKey) as exc:
        release_allocation(s, inst.uuid)  # the destination's claim
        rekey_allocation(s, mig.uuid, inst.uuid)
        raise ConductorError(409, str(exc)) from None
    mig.dest_compute = mig.dest_node = dest
    if not cas_migration(s, mig.uuid, ("accepted",), "queued"):
        raise ConductorError(409, f"Migration {mig.id} changed state concurrently.")
    # Nova's flow: the destination writes its shared storage test file, the source decides to block-migrate
    # or not (a refusal fails the move: the server stays), the destination prepares (pre_live_migration), the
    # source copies and drops the guest, the destination finishes (post_live_migration_at_destination, or its
    # rollback after an abort).
    ctx.update(dest=dest, final_host=dest, host=dest, spec=spec,
               ops=[["check_live_migration_destination", dest], ["check_live_migration_source", source],
                    ["pre_live_migration", dest], ["live_migrate", source], ["post_live_migration", dest]])


@celery.task(name="stratus.conductor.live_migration_prechecks", ignore_result=True)
def live_migration_prechecks(ctx: dict) -> None:
    """2.34+: the pre-checks after the 202. A failure is recorded, not raised: the server stays where it is."""
    uuid = ctx["instance_uuid"]
    failure = None
    with write_session() as s:
        inst = get_instance(s, uuid, lock=True)
        mig = s.scalars(select(Migration).where(Migration.uuid == ctx["migration_uuid"])).first()
        if inst is None or inst.deleted or inst.task_state != ctx["task_state"] or mig is None \
                or mig.status != "accepted":
            LOG.info("live-migration pre-checks for %s lost their race; nothing written", uuid)
            return
        try:
            _precheck_and_claim(s, inst, mig, ctx)
        except ConductorError as exc:
            failure = exc.message
            cas_migration(s, mig.uuid, ("accepted",), "error")
            cas_instance(s, uuid, expected_task_state=ctx["task_state"], task_state=None)
            add_fault(s, uuid, exc.code, exc.message, host=ctx["source"])
            record_event(s, uuid, ctx["request_id"], "conductor_live_migrate_instance", ctx.get("t0"),
                         "Error", host=ctx["source"], details=exc.message)
    if failure is None:
        run_ops(ctx)
    else:
        LOG.info("live migration of %s refused by its pre-checks: %s", uuid, failure)


@celery.task(name="stratus.conductor.live_migration_running", ignore_result=True)
def live_migration_running(ctx: dict) -> None:
    """The driver started copying. If the migration was cancelled while queued meanwhile, abort the copy too."""
    with write_session() as s:
        if cas_migration(s, ctx["migration_uuid"], ("queued",), "running"):
            return
        status = s.scalar(select(Migration.status).where(Migration.uuid == ctx["migration_uuid"]))
    if status == "cancelled":
        _control(new_ctx(ctx["instance_uuid"], ctx["request_id"], "live_migration_abort", host=ctx["source"],
                         migration_uuid=ctx["migration_uuid"]))


def _control(ctx: dict) -> None:
    chain(sig("stratus.compute.live_migration_control", ctx),
          sig("stratus.conductor.record_op_event")).apply_async()


def _migration_of(s, uuid: str, migration_id: str, code: int) -> Migration:
    mig = s.scalars(select(Migration).where(Migration.id == int(migration_id), Migration.instance_uuid == uuid,
                                            Migration.deleted == 0)).first() if migration_id.isdigit() else None
    if mig is None:
        raise ConductorError(code, f"Migration {migration_id} not found for instance {uuid}")
    return mig


def _invalid_migration_state(mig: Migration, uuid: str, method: str) -> ConductorError:
    return ConductorError(400, f"Migration {mig.id} state of instance {uuid} is {mig.status}. Cannot {method} "
                               f"while the migration is in this state.")


@rpc("live_migration_force_complete", session=False)
def live_migration_force_complete(req: dict) -> dict:
    """2.22: Nova answers 409 unless ACTIVE/PAUSED and migrating, 400 for an unknown or not running migration."""
    uuid = req["instance_uuid"]
    require_driver("live_migration_force_complete", "force_complete")
    with write_session() as s:
        inst = locked_instance(s, uuid)
        if inst.vm_state not in RULE["from"]:
            raise invalid_state("force_complete", uuid, "vm_state", inst.vm_state)
        if inst.task_state != RULE["task_state"]:
            raise invalid_state("force_complete", uuid, "task_state", inst.task_state)
        mig = _migration_of(s, uuid, req["migration_id"], 400)
        if mig.status != "running" or mig.migration_type != "live-migration":
            raise _invalid_migration_state(mig, uuid, "force complete")
        start_action(s, uuid, "live_migration_force_complete", req["request_id"], req.get("user_id"),
                     req.get("project_id"))
        ctx = new_ctx(uuid, req["request_id"], "live_migration_force_complete", host=mig.source_compute,
                      migration_uuid=mig.uuid)
    _control(ctx)
    return {}


@rpc("live_migration_abort", session=False)
def live_migration_abort(req: dict) -> dict:
    """2.24: abort a running live migration (the driver cancels the copy); 2.65: also a queued one, which the
    conductor ends itself. 409 unless migrating, 404 unknown migration, 400 not abortable in its status."""
    uuid = req["instance_uuid"]
    require_driver("live_migration_abort", "abort live migration")
    with write_session() as s:
        inst = locked_instance(s, uuid)
        if inst.task_state != RULE["task_state"]:
            raise invalid_state("abort live migration", uuid, "task_state", inst.task_state)
        mig = _migration_of(s, uuid, req["migration_id"], 404)
        allowed = ("running", "queued", "preparing") if req.get("abort_queued") else ("running",)
        if mig.status not in allowed or mig.migration_type != "live-migration":
            raise _invalid_migration_state(mig, uuid, "abort live migration")
        start_action(s, uuid, "live_migration_cancel", req["request_id"], req.get("user_id"),
                     req.get("project_id"))
        if mig.status != "running":
            _cancel_queued(s, inst, mig, req["request_id"])
            return {}
        ctx = new_ctx(uuid, req["request_id"], "live_migration_abort", host=mig.source_compute,
                      migration_uuid=mig.uuid)
    _control(ctx)
    return {}


def _cancel_queued(s, inst, mig: Migration, request_id: str) -> None:
    """The copy has not started: give the destination's claim back and end the migration here."""
    if not cas_migration(s, mig.uuid, ("queued", "preparing"), "cancelled"):
        raise ConductorError(409, f"Migration {mig.id} changed state concurrently; retry the request.")
    release_allocation(s, inst.uuid)  # the destination's claim
    rekey_allocation(s, mig.uuid, inst.uuid)
    cas_instance(s, inst.uuid, expected_task_state=RULE["task_state"], task_state=None)
    record_event(s, inst.uuid, request_id, "compute_live_migration_abort", None, "Success",
                 host=mig.source_compute)
