"""Periodic housekeeping run by Celery beat."""
from __future__ import annotations

import logging

import datetime as dt
import time

from sqlalchemy import delete, select

from app.db import write_session
from app.models import ConsoleAuthToken, Instance, Token, utcnow
from app.settings import get_settings
from drivers.base import PowerState
from tasks import db_write, states
from tasks.celery_app import celery

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
                if db_write.cas_instance(s, uuid, expected_task_state=task_state, vm_state=states.ERROR,
                                         task_state=None, power_state=PowerState.NOSTATE):
                    db_write.release_allocation(s, uuid)
                    db_write.add_fault(s, uuid, 500, f"Instance build timed out: no progress in {task_state} for "
                                                     f"{cfg.instance_build_timeout} s")
                    expired += 1
            elif vm_state != states.BUILDING and task_state != states.DELETING and updated < task_cutoff:
                if db_write.cas_instance(s, uuid, expected_task_state=task_state, task_state=None):
                    db_write.add_fault(s, uuid, 500, f"Task {task_state} timed out after "
                                                     f"{cfg.task_state_timeout} s; the task state was reset")
                    expired += 1
    if expired:
        LOG.warning("expired %d stuck instance task(s)", expired)
    return expired


@celery.task(name="stratus.conductor.audit_allocations")
def audit_allocations() -> int:
    """Remove allocations whose instance is gone (deleted or never created), giving the resources back."""
    with write_session() as s:
        orphans = [a["instance_uuid"] for a in db_write.orphaned_allocations(s)]
        for uuid in orphans:
            db_write.release_allocation(s, uuid)
    for uuid in orphans:
        LOG.warning("removed orphaned allocation of instance %s", uuid)
    return len(orphans)


@celery.task(name="stratus.conductor.reclaim_soft_deleted")
def reclaim_soft_deleted() -> int:
    """Nova's _reclaim_queued_deletes: hard-delete servers SOFT_DELETED for longer than
    reclaim_instance_interval (their claim, addresses and quota are released by finish_delete)."""
    from tasks.conductor_actions import reclaim

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
