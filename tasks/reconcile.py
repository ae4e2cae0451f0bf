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
from core.models import Instance, Migration
from core.power_state import PowerState
from core.routing import compute_queue
from core.writes.instances import add_fault, cas_instance, get_instance
from core.writes.resources import IN_FLIGHT_MIGRATIONS
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
    move_hosts: tuple[str, ...] = ()  # source and destination of its moves in flight (a resize to confirm)


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
        elif row.deleted or (row.host != host and row.task_state is None and host not in row.move_hosts):
            # not a move's other guest (the source a resize keeps until confirm/revert), nor a task's (an
            # unshelve spawns where the row has no host yet)
            out.orphans.append(uuid)
        elif uuid in guests and row.task_state is None:
            out.adopt.append(uuid)
    for row in rows:
        if (not row.deleted and row.host == host and row.task_state is None and row.vm_state in HAS_GUEST
                and row.uuid not in guests):
            out.missing.append(row.uuid)
    return out


def move_hosts(s, uuids: set[str]) -> dict[str, tuple[str, ...]]:
    """The hosts of each instance's moves in flight: both hold a guest of it until the move ends."""
    out: dict[str, set[str]] = {}
    for uuid, source, dest in s.execute(select(Migration.instance_uuid, Migration.source_compute,
                                               Migration.dest_compute).where(
            Migration.status.in_(IN_FLIGHT_MIGRATIONS), Migration.instance_uuid.in_(uuids))):
        out.setdefault(uuid, set()).update(h for h in (source, dest) if h)
    return {u: tuple(sorted(h)) for u, h in out.items()}


# What reconciliation reads of an instance.
_ROWS = select(Instance.uuid, Instance.host, Instance.deleted, Instance.vm_state, Instance.task_state,
               Instance.power_state)


@celery.task(name="stratus.conductor.reconcile_host", ignore_result=True)
def reconcile_host(host: str, guests: list[str], disks: list[str]) -> dict:
    """A compute worker started on ``host`` with these guests and disks: plan, set the missing instances to
    ERROR, and send the compute its part (orphans to destroy; guests to adopt, with the power state the DB has)."""
    found = set(guests) | set(disks)
    with read_session() as s:
        moving = move_hosts(s, found)
        rows = s.execute(_ROWS.where(((Instance.host == host) & (Instance.deleted == 0))
                                     | Instance.uuid.in_(found))).all()
    answer = _answer(host, set(guests), set(disks), rows, moving)
    celery.send_task("stratus.compute.reconciled", args=(host, answer), queue=compute_queue(host))
    return answer


@celery.task(name="stratus.conductor.reconcile_hosts", ignore_result=True)
def reconcile_hosts(found: dict[str, list]) -> dict[str, dict]:
    """A compute worker started with these guests and disks on each of its hosts (``{host: [guests, disks]}``):
    ``reconcile_host``'s plan for every host from one read, the missing instances set to ERROR (each checked to be
    on its host), and one answer (``stratus.compute.reconciled_hosts``) to the worker's first host's queue."""
    if not found:
        return {}
    hosts = sorted(found)
    uuids = {u for guests, disks in found.values() for u in (*guests, *disks)}
    with read_session() as s:
        moving = move_hosts(s, uuids) if uuids else {}
        rows = []
        for i in range(0, len(hosts), 1000):
            chunk = hosts[i:i + 1000]
            rows += s.execute(_ROWS.where(Instance.host.in_(chunk), Instance.deleted == 0)).all()
        if uuids:
            rows += s.execute(_ROWS.where(Instance.uuid.in_(uuids))).all()
    by_uuid = {r.uuid: r for r in rows}
    by_host: dict[str | None, list] = {}
    for row in by_uuid.values():
        by_host.setdefault(row.host, []).append(row)
    answers = {}
    for host in hosts:
        guests, disks = set(found[host][0]), set(found[host][1])
        mine = {r.uuid: r for r in by_host.get(host, ())}
        mine.update({u: by_uuid[u] for u in guests | disks if u in by_uuid})
        answers[host] = _answer(host, guests, disks, list(mine.values()), moving)
    celery.send_task("stratus.compute.reconciled_hosts", args=(answers,), queue=compute_queue(hosts[0]))
    return answers


def _answer(host: str, guests: set[str], disks: set[str], rows: list, moving: dict) -> dict:
    """``plan`` for one host, its missing instances set to ERROR, and what its compute does (the answer)."""
    todo = plan(host, guests, disks, [InstanceRow(u, h, bool(d), vm, ts, moving.get(u, ()))
                                      for u, h, d, vm, ts, _ in rows])
    power = {r.uuid: r.power_state for r in rows}
    if todo.missing:
        LOG.error("reconcile %s: %d instance(s) missing from the hypervisor: %s", host, len(todo.missing),
                  todo.missing)
        instances_missing(host, todo.missing)
    return {"orphans": todo.orphans, "unknown": todo.unknown, "missing": todo.missing,
            "adopt": {uuid: power[uuid] for uuid in todo.adopt}}


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
