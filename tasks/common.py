"""Helpers shared by the task modules: failure reporting and canvases. Tasks pass IDs, never secrets."""
from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from celery import chain
from celery.exceptions import Ignore

from tasks.celery_app import celery

LOG = logging.getLogger(__name__)


def sig(name: str, *args: Any):
    return celery.signature(name, args=args)


def new_ctx(instance_uuid: str, request_id: str, action: str, **extra: Any) -> dict:
    return {"instance_uuid": instance_uuid, "request_id": request_id, "action": action, "t0": time.time(), **extra}


def boot_canvas(ctx: dict):
    return chain(sig("stratus.scheduler.schedule", ctx), sig("stratus.conductor.claim"),
                 sig("stratus.compute.build_disk"), sig("stratus.compute.spawn"), sig("stratus.conductor.finish_boot"))


def report_failure(ctx: dict, exc: BaseException, reschedulable: bool = False) -> None:
    """Tell the conductor a step failed; it records the fault, releases the claim and maybe reschedules."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    message = str(exc) or type(exc).__name__
    celery.send_task("stratus.conductor.step_failed", args=(ctx, message, details, reschedulable),
                     queue="conductor")


def step(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a canvas step: any exception is reported to the conductor, then re-raised so the chain stops
    and Flower shows the failed step with its traceback."""
    @functools.wraps(fn)
    def inner(ctx: dict, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(ctx, *args, **kwargs)
        except StopCanvas as stop:
            LOG.info("step %s ends the canvas for %s: %s", fn.__name__, ctx.get("instance_uuid"), stop)
            raise Ignore() from None
        except Exception as exc:
            LOG.warning("step %s failed for %s: %s", fn.__name__, ctx.get("instance_uuid"), exc)
            report_failure(ctx, exc, reschedulable=getattr(exc, "reschedulable", False))
            raise
    return inner


class StopCanvas(Exception):
    """The instance moved on (deleted, or another action won the race): end this canvas quietly."""
