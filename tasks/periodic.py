"""Periodic housekeeping run by Celery beat."""
from __future__ import annotations

import logging

import datetime as dt
import time

from sqlalchemy import and_, delete, exists, select

from core import states
from core.db import read_session, write_session
from core.models import ConsoleAuthToken, Instance, InstanceAction, InstanceActionEvent, Token, utcnow
from core.power_state import PowerState
from core.routing import compute_queue
from core.settings import get_settings
from core.writes.instances import add_fault, cas_instance, record_event
from core.writes.resources import orphaned_allocations, release_allocation
from drivers.base import DriverError
from tasks.common import StopCanvas, boot_canvas, new_ctx
from tasks.conductor import specs
from tasks.conductor.actions import reclaim
from tasks.conductor.resume import resume_actions, stalled_actions
from tasks.messaging.celery_app import celery
from tasks.messaging.liveness import live_queues

LOG = logging.getLogger(__name__)


@celery.task(name="stratus.conductor.purge_expired_tokens", ignore_result=True)
def purge_expired_tokens() -> int:
    """Expired or revoked identity tokens and expired console tokens."""
    with write_session() as s:
        n = s.execute(delete(Token).where((Token.expires_at < utcnow()) | Token.revoked.is_(True))).rowcount
        n += s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.expires < int(time.time()))).rowcount
    if n:
        LOG.info("purged %d expired tokens", n)
    return n


@celery.task(name="stratus.conductor.expire_stuck_instances")
def expire_stuck_instances() -> int:
    """Nova's instance_build_timeout, for every transitional task_state: a BUILD that made no progress goes to
    ERROR with a fault and its claim is released; another stuck task is cleared with a fault."""
    cfg = get_settings()
    now = utcnow()
    build_cutoff = now - dt.timedelta(seconds=cfg.instance_build_timeout)
    task_cutoff = now - dt.timedelta(seconds=cfg.task_state_timeout)
    expired = 0
    with write_session() as s:
        rows = s.execute(select(Instance.uuid, Instance.vm_state, Instance.task_state, Instance.updated_at).where(
            Instance.deleted == 0, Instance.task_state.isnot(None))).all()
        for uuid, vm_state, task_state, updated in rows:
            if vm_state == states.BUILDING and updated < build_cutoff:
                if cas_instance(s, uuid, expected_task_state=task_state, vm_state=states.ERROR,
                                task_state=None, power_state=PowerState.NOSTATE):
                    release_allocation(s, uuid)
                    add_fault(s, uuid, 500, f"Instance build timed out: no progress in {task_state} for "
                                            f"{cfg.instance_build_timeout} s")
                    expired += 1
            elif vm_state != states.BUILDING and task_state != states.DELETING and updated < task_cutoff:
                if cas_instance(s, uuid, expected_task_state=task_state, task_state=None):
                    add_fault(s, uuid, 500, f"Task {task_state} timed out after "
                                            f"{cfg.task_state_timeout} s; the task state was reset")
                    expired += 1
    if expired:
        LOG.warning("expired %d stuck instance task(s)", expired)
    return expired


RESUME_EVENT = "conductor_resume_build"


@celery.task(name="stratus.conductor.resume_stalled_builds")
def resume_stalled_builds() -> int:
    """Send the current step of a boot that made no progress again, once per boot, before it would time out;
    likewise the canvas of any other action (tasks/conductor/resume.py). Returns how many were sent.

    A broker can lose a message it already handed out: Redis pops a message for a worker's BRPOP, persists the pop
    and shuts down before the reply leaves (seen in the Redis-restart test: one schedule message of 100 boots
    vanished). No worker holds it, so no visibility timeout brings it back. The instance's state says where the
    boot stands, and every step is idempotent (compare-and-swap on task_state), so sending that step again is safe
    even if the original message was only slow. Recorded as an instance-action event the user and operator see.

    A step goes only to a queue some live consumer serves (tasks/messaging/liveness.py): sent to a queue nobody
    reads it would only wait there, and the boot would count as resumed. Such a boot is tried on a later run."""
    cfg = get_settings()
    now = utcnow()
    stalled_since = now - dt.timedelta(seconds=cfg.stalled_build_resume_after)
    expires_at = now - dt.timedelta(seconds=cfg.instance_build_timeout)
    resumed_before = exists().where(InstanceActionEvent.action_id == InstanceAction.id,
                                    InstanceActionEvent.event == RESUME_EVENT)
    with read_session() as s:
        boots = s.execute(
            select(Instance.uuid, Instance.task_state, Instance.host, Instance.requested_host, Instance.attempts,
                   InstanceAction.request_id)
            .join(InstanceAction, and_(InstanceAction.instance_uuid == Instance.uuid,
                                       InstanceAction.action == "create"))
            .where(Instance.deleted == 0, Instance.vm_state == states.BUILDING,
                   Instance.task_state.in_((states.SCHEDULING, states.SPAWNING)),
                   Instance.updated_at < stalled_since, Instance.updated_at >= expires_at, ~resumed_before)).all()
    actions = stalled_actions(now)  # every other action's canvas (tasks/conductor/resume.py)
    consumed = live_queues(celery) if boots or actions else set()
    resumed = resume_actions(actions, consumed)
    for row in boots:  # sent first, recorded after: a resend that failed is tried again on the next run
        queue = "scheduler" if row.task_state == states.SCHEDULING else compute_queue(row.host)
        if consumed is not None and queue not in consumed:
            LOG.warning("boot of %s made no progress in %s, but no live worker consumes %s: its step is not sent "
                        "(tried again on the next run)", row.uuid, row.task_state, queue)
            continue
        ctx = new_ctx(row.uuid, row.request_id, "create", tried=[], requested_host=row.requested_host)
        if row.task_state == states.SCHEDULING:
            boot_canvas(ctx).apply_async()
        else:
            with read_session() as s:  # the compute steps read no DB: their message carries the spec
                try:
                    spec = specs.spec_message(s, row.uuid, row.host)
                except (StopCanvas, specs.NoSealingKey, DriverError) as exc:
                    LOG.warning("boot of %s made no progress in %s and cannot be resumed: %s", row.uuid,
                                row.task_state, exc)
                    continue
            ctx = {**ctx, "host": row.host, "alternates": [], "attempt": max(row.attempts, 1), "spec": spec}
            boot_canvas(ctx, first="stratus.compute.build").apply_async()
        with write_session() as s:
            record_event(s, row.uuid, row.request_id, RESUME_EVENT, None, "Success", host=row.host,
                         finish_action=False, details=f"No progress in {row.task_state}: the step was "
                                                      f"sent again")
        LOG.warning("boot of %s made no progress in %s: its step was sent again", row.uuid, row.task_state)
        resumed += 1
    return resumed


@celery.task(name="stratus.conductor.audit_allocations")
def audit_allocations() -> int:
    """Remove allocations whose instance is gone (deleted or never created), giving the resources back."""
    with write_session() as s:
        orphans = [a["instance_uuid"] for a in orphaned_allocations(s)]
        for uuid in orphans:
            release_allocation(s, uuid)
    for uuid in orphans:
        LOG.warning("removed orphaned allocation of instance %s", uuid)
    return len(orphans)


@celery.task(name="stratus.conductor.reclaim_soft_deleted")
def reclaim_soft_deleted() -> int:
    """Nova's _reclaim_queued_deletes: hard-delete servers SOFT_DELETED for longer than
    reclaim_instance_interval (their claim, addresses and quota are released by finish_delete)."""
    interval = get_settings().reclaim_instance_interval
    if interval <= 0:
        return 0
    cutoff = utcnow() - dt.timedelta(seconds=interval)
    with write_session() as s:
        expired = list(s.scalars(select(Instance.uuid).where(
            Instance.deleted == 0, Instance.vm_state == states.SOFT_DELETED, Instance.task_state.is_(None),
            Instance.deleted_at <= cutoff)))
    reclaimed = sum(reclaim(uuid, f"req-reclaim-{uuid}") for uuid in expired)
    if reclaimed:
        LOG.info("reclaimed %d soft-deleted instance(s)", reclaimed)
    return reclaimed
