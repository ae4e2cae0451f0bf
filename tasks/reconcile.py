"""Start-up reconciliation: make the DB and the hypervisors agree again after a crash.

When a compute worker starts it sends the conductor its driver's guests and disks (tasks.compute.reconcile_host);
the conductor compares them with the DB's instances for the host (``plan``), sets the missing ones to ERROR and
answers the compute (``stratus.compute.reconciled``) with the orphans to destroy and the guests to adopt. The
compute host never reads the DB. On conductor start, the builds a crash left behind expire.
"""
from __future__ import annotations

import dataclasses
import logging

from celery.signals import worker_ready

from sqlalchemy import select

from core import states
from core.db import read_session, write_session
from core.models import Instance
from core.routing import compute_queue
from core.power_state import PowerState
from core.writes.instances import add_fault, cas_instance, get_instance
from tasks.messaging.celery_app import celery

LOG = logging.getLogger(__name__)

# vm_states in which the instance must have a guest on its host (no task running)
HAS_GUEST = (states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED)


@dataclasses.dataclass(frozen=True)
class InstanceRow:
    uuid: str
    host: str | None
    deleted: bool
    vm_state: str
    task_state: str | None


@dataclasses.dataclass
class Plan:
    adopt: list[str] = dataclasses.field(default_factory=list)  # known guests: sync their power state
    missing: list[str] = dataclasses.field(default_factory=list)  # DB says it runs here; the driver lacks it
    orphans: list[str] = dataclasses.field(default_factory=list)  # DB deleted it or placed it elsewhere: destroy
    unknown: list[str] = dataclasses.field(default_factory=list)  # no DB row at all: report only (not ours?)


def plan(host: str, guests: set[str], disks: set[str], rows: list[InstanceRow]) -> Plan:
    """Decide, per UUID, what start-up reconciliation does. Builds and tasks in flight are left alone: their
    redelivered messages finish them, or expire_stuck_instances fails them after instance_build_timeout."""
    out = Plan()
    by_uuid = {r.uuid: r for r in rows}
    for uuid in sorted(guests | disks):
        row = by_uuid.get(uuid)
        if row is None:
            out.unknown.append(uuid)
        elif row.deleted or row.host != host:
            out.orphans.append(uuid)
        elif uuid in guests and row.task_state is None:
            out.adopt.append(uuid)
    for row in rows:
        if (not row.deleted and row.host == host and row.task_state is None and row.vm_state in HAS_GUEST
                and row.uuid not in guests):
            out.missing.append(row.uuid)
    return out


@celery.task(name="stratus.conductor.reconcile_host", ignore_result=True)
def reconcile_host(host: str, guests: list[str], disks: list[str]) -> dict:
    """A compute worker started on ``host`` with these guests and disks: plan, set the missing instances to
    ERROR, and send the compute its part (orphans to destroy; guests to adopt, with the power state the DB has)."""
    found = set(guests) | set(disks)
    with read_session() as s:
        rows = s.execute(
            select(Instance.uuid, Instance.host, Instance.deleted, Instance.vm_state, Instance.task_state,
                   Instance.power_state).where(
                ((Instance.host == host) & (Instance.deleted == 0)) | Instance.uuid.in_(found))).all()
    todo = plan(host, set(guests), set(disks), [InstanceRow(u, h, bool(d), vm, ts) for u, h, d, vm, ts, _ in rows])
    power = {r.uuid: r.power_state for r in rows}
    if todo.missing:
        LOG.error("reconcile %s: %d instance(s) missing from the hypervisor: %s", host, len(todo.missing),
                  todo.missing)
        instances_missing(host, todo.missing)
    answer = {"orphans": todo.orphans, "unknown": todo.unknown, "missing": todo.missing,
              "adopt": {uuid: power[uuid] for uuid in todo.adopt}}
    celery.send_task("stratus.compute.reconciled", args=(host, answer), queue=compute_queue(host))
    return answer


@celery.task(name="stratus.conductor.instances_missing", ignore_result=True)
def instances_missing(host: str, uuids: list[str]) -> int:
    """A compute host started without guests the DB says it runs: ERROR with a fault (Nova leaves them for
    the operator too; the user can delete or the admin can rebuild)."""
    failed = 0
    with write_session() as s:
        for uuid in uuids:
            inst = get_instance(s, uuid)
            if inst is None or inst.deleted or inst.host != host:
                LOG.warning("missing-instance report from %s about %s refused: it is not on that host", host, uuid)
                continue
            if cas_instance(s, uuid, expected_task_state=None, expected_vm_states=HAS_GUEST,
                            vm_state=states.ERROR, power_state=PowerState.NOSTATE):
                add_fault(s, uuid, 500, f"Instance {uuid} was not found on host {host} when its compute "
                                        f"service started; the guest is lost", host=host)
                failed += 1
    if failed:
        LOG.error("%d instance(s) missing on %s at start-up set to ERROR", failed, host)
    return failed


@worker_ready.connect(weak=False)
def expire_on_conductor_start(sender=None, **_) -> None:
    """When a conductor starts, builds and tasks a crash left in a transitional state past their timeout go to
    ERROR (or lose their task) and give their claims back; the same task beat runs every minute."""
    try:
        queues = {q.name for q in sender.app.amqp.queues.consume_from.values()}
    except AttributeError:
        return
    if "conductor" in queues:
        celery.send_task("stratus.conductor.expire_stuck_instances", queue="conductor")
