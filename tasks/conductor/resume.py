"""Resume a server action whose step message a broker lost (issue 27): stop, start, reboot, pause, suspend, their
reverses, rescue, rebuild, snapshot, backup, soft delete, restore, delete, resize, migrate, revert, evacuate,
shelve, shelve offload and unshelve.

A compute worker SIGKILLed between Redis's BRPOP and kombu's registration of the message as unacknowledged
(or a broker that stops right after handing a message out) loses it: no visibility timeout brings it back and
the instance stays in its task_state until ``expire_stuck_instances`` clears it (900 s; a delete never expires).
Each action keeps the canvas it sent on its instance-action row (``remember_canvas``); when the instance's
task_state has not moved for ``stalled_build_resume_after`` the canvas is sent again, from its first step, once
per action, and only when a live consumer serves every compute queue it names (tasks/messaging/liveness.py).
Every step is idempotent (a stopped guest stops again as a no-op, a snapshot is written again, the conductor's
finish is a CAS on task_state), so a slow original and the resent copy cannot both win.

Nova has no broker loss to cover, but resumes the same steps when nova-compute restarts (``_init_instance``:
POWERING_OFF → stop again, POWERING_ON → start, REBOOTING → reboot, DELETING → delete) and resets the rest.
Not covered: live migration (a copy may run for long and is not restartable from its source; Nova also gives
it up), the reclaim of soft-deleted servers (no action row), and confirmResize and the crash dump, which set no
task_state to see stalled.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, select

from core import states
from core.db import read_session, write_session
from core.errors import ConductorError
from core.models import Instance, InstanceAction, InstanceActionEvent
from core.routing import compute_queue
from core.settings import get_settings
from core.writes.instances import record_event
from drivers.base import DriverError
from tasks.common import Chain, StopCanvas
from tasks.conductor import specs
from tasks.conductor.actions import compute_needs

LOG = logging.getLogger(__name__)

RESUME_EVENT = "conductor_resume_task"
# The moves whose destination step carries the instance spec (sealed for the destination).
_SPEC_MOVES = ("resize", "migrate", "evacuate", "unshelve")


def stalled_actions(now: dt.datetime) -> list:
    """Instances whose task_state (not a boot's) has not moved for the grace period, with the open action whose
    remembered canvas set that task_state and has not been resumed yet."""
    cfg = get_settings()
    stalled_since = now - dt.timedelta(seconds=cfg.stalled_build_resume_after)
    expires_at = now - dt.timedelta(seconds=cfg.task_state_timeout)
    resumed = select(InstanceActionEvent.id).where(InstanceActionEvent.action_id == InstanceAction.id,
                                                   InstanceActionEvent.event == RESUME_EVENT).exists()
    with read_session() as s:
        rows = s.execute(
            select(Instance.uuid, Instance.task_state, Instance.updated_at, InstanceAction.id,
                   InstanceAction.request_id, InstanceAction.canvas)
            .join(InstanceAction, and_(InstanceAction.instance_uuid == Instance.uuid,
                                       InstanceAction.canvas.isnot(None)))
            .where(Instance.deleted == 0, Instance.task_state.isnot(None),
                   (Instance.vm_state != states.BUILDING) | (Instance.task_state == states.DELETING),
                   Instance.updated_at < stalled_since, ~resumed)
            .order_by(InstanceAction.id.desc())).all()
    picked: dict[str, object] = {}
    for row in rows:  # the newest action per instance; it must be the one that set the current task_state
        if row.uuid in picked:
            continue
        picked[row.uuid] = row
    return [row for row in picked.values()
            if row.canvas["ctx"].get("task_state") == row.task_state
            and (row.task_state == states.DELETING or row.updated_at >= expires_at)]


def queues_of(steps: list[str], ctx: dict) -> set[str]:
    """The queues a canvas's steps go to (compute steps by the host in ctx; a move's steps by its ops)."""
    out = {"conductor"} if any(step.startswith("stratus.conductor.") for step in steps) else set()
    if ctx.get("ops"):
        out |= {compute_queue(host) for _, host in ctx["ops"]}
    elif any(step.startswith("stratus.compute.") for step in steps):
        out.add(compute_queue(ctx["host"]))
    return out


def rebuilt_ctx(s, ctx: dict) -> dict:
    """The stored context with what was left out of it rebuilt: the spec (sealed now for its host), the rescue
    image. A DriverError / NoSealingKey / StopCanvas when that cannot be done."""
    if ctx["action"] in _SPEC_MOVES:
        return {**ctx, "spec": specs.spec_message(s, ctx["instance_uuid"], ctx["dest"],
                                                  image_id=ctx.get("boot_image_id"))}
    if ctx["action"] in ("rescue", "rebuild"):
        return {**ctx, **compute_needs(s, ctx)}
    return dict(ctx)


def resume_actions(rows: list, consumed: set[str] | None) -> int:
    """Send again the canvas of each stalled action (``stalled_actions``); ``consumed``: the queues live
    consumers serve (None: unknown, send anyway). Returns how many were sent."""
    resumed = 0
    for row in rows:
        steps, ctx = row.canvas["steps"], row.canvas["ctx"]
        dead = sorted(queues_of(steps, ctx) - consumed) if consumed is not None else []
        if dead:
            LOG.warning("%s of %s made no progress in %s, but no live worker consumes %s: not sent again (tried "
                        "on the next run)", ctx["action"], row.uuid, row.task_state, ", ".join(dead))
            continue
        try:
            with read_session() as s:
                ctx = rebuilt_ctx(s, ctx)
        except (StopCanvas, specs.NoSealingKey, DriverError, ConductorError) as exc:
            LOG.warning("%s of %s made no progress in %s and cannot be resumed: %s", ctx["action"], row.uuid,
                        row.task_state, exc)
            continue
        Chain(steps, ctx).apply_async()  # sent first, recorded after: a failed send is tried on the next run
        with write_session() as s:
            record_event(s, row.uuid, row.request_id, RESUME_EVENT, None, "Success", host=ctx.get("host"),
                         finish_action=False, details=f"No progress in {row.task_state}: the {ctx['action']} step "
                                                      f"was sent again")
        LOG.warning("%s of %s made no progress in %s: its canvas was sent again", ctx["action"], row.uuid,
                    row.task_state)
        resumed += 1
    return resumed
