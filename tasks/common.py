"""Helpers shared by the task modules: failure reporting and canvases. Tasks pass IDs, never secrets."""
from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from celery import chain, current_task
from celery.exceptions import Ignore

from tasks.celery_app import celery
from tasks.transient import is_transient

LOG = logging.getLogger(__name__)


def sig(name: str, *args: Any):
    return celery.signature(name, args=args)


def new_ctx(instance_uuid: str, request_id: str, action: str, **extra: Any) -> dict:
    return {"instance_uuid": instance_uuid, "request_id": request_id, "action": action, "t0": time.time(), **extra}


BOOT_STEPS = ("stratus.scheduler.schedule", "stratus.conductor.claim", "stratus.compute.build_disk",
              "stratus.compute.spawn", "stratus.conductor.finish_boot")


def boot_canvas(ctx: dict, first: str = BOOT_STEPS[0]):
    """The boot's steps as one chain, from ``first`` on (a reschedule starts at the claim, a resumed boot at the
    step it stalled in)."""
    rest = BOOT_STEPS[BOOT_STEPS.index(first) + 1:]
    return chain(sig(first, ctx), *(sig(name) for name in rest))


def report_failure(ctx: dict, exc: BaseException, reschedulable: bool = False) -> None:
    """Tell the conductor a step failed; it records the fault, releases the claim and maybe reschedules."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    message = str(exc) or type(exc).__name__
    celery.send_task("stratus.conductor.step_failed", args=(ctx, message, details, reschedulable),
                     queue="conductor")


def will_retry(exc: BaseException) -> bool:
    """True when the running task's autoretry will run it again for ``exc`` (a transient error, retries left)."""
    task = current_task
    if task is None or not is_transient(exc) or not getattr(task, "autoretry_for", ()):
        return False
    return task.request.retries < (task.max_retries if task.max_retries is not None else float("inf"))


def step(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a canvas step: any exception is reported to the conductor, then re-raised so the chain stops
    and Flower shows the failed step with its traceback. A transient error (database, broker or hypervisor
    connection) is re-raised unreported while the task's automatic retries last."""
    @functools.wraps(fn)
    def inner(ctx: dict, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(ctx, *args, **kwargs)
        except StopCanvas as stop:
            LOG.info("step %s ends the canvas for %s: %s", fn.__name__, ctx.get("instance_uuid"), stop)
            raise Ignore() from None
        except Exception as exc:
            if will_retry(exc):
                LOG.warning("step %s for %s hit a transient error, retrying: %s", fn.__name__,
                            ctx.get("instance_uuid"), exc)
                raise
            LOG.warning("step %s failed for %s: %s", fn.__name__, ctx.get("instance_uuid"), exc)
            report_failure(ctx, exc, reschedulable=getattr(exc, "reschedulable", False))
            raise
    return inner


class StopCanvas(Exception):
    """The instance moved on (deleted, or another action won the race): end this canvas quietly."""
