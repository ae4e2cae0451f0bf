"""Helpers shared by the task modules: failure reporting and canvases. Tasks pass IDs, never secrets."""
from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from celery import current_task
from celery.exceptions import Ignore

from tasks.messaging.celery_app import celery, ctx_argsrepr
from tasks.messaging.transient import is_transient

LOG = logging.getLogger(__name__)


def sig(name: str, *args: Any):
    return celery.signature(name, args=args)


def new_ctx(instance_uuid: str, request_id: str, action: str, **extra: Any) -> dict:
    return {"instance_uuid": instance_uuid, "request_id": request_id, "action": action, "t0": time.time(), **extra}


# The compute host builds the disk and spawns the guest in one step (tasks/compute.build): five hops with the API's
# RPC, not six (bench/JOURNAL.md, 2026-12-07 evening).
BOOT_STEPS = ("stratus.scheduler.schedule", "stratus.conductor.claim", "stratus.compute.build",
              "stratus.conductor.finish_boot")


class Chain:
    """A chain of steps that each take the previous step's result (the ctx), published as its first step's
    message carrying the rest in Celery's own ``chain`` field, which the worker's tracer follows as it does for
    ``celery.chain`` (Flower links the steps by parent and root id as before). It skips what ``celery.chain``
    does on every publish: build, clone and freeze a signature per step (14 % of the conductor's CPU in a boot
    storm, bench/README.md). A step's result travels in the next message and is never stored: every step must
    be ``ignore_result``, which the links also tell the publishers (no result subscription per step)."""

    def __init__(self, steps: Sequence[str], ctx: dict):
        self.steps, self.ctx = tuple(steps), ctx

    def apply_async(self) -> None:
        first, rest = self.steps[0], self.steps[1:]
        celery.send_task(first, args=(self.ctx,), ignore_result=True, chain=_links(rest),
                         argsrepr=ctx_argsrepr((self.ctx,)), kwargsrepr="{}")


@functools.lru_cache(maxsize=64)
def _link_template(steps: tuple[str, ...]) -> tuple[dict, ...]:
    return tuple(dict(celery.signature(name, options={"ignore_result": True})) for name in reversed(steps))


def _links(steps: tuple[str, ...]) -> list[dict]:
    # The message's "chain" holds the later steps last-first (the tracer pops the end); fresh dicts per message.
    return [{**link, "options": dict(link["options"])} for link in _link_template(steps)]


def boot_canvas(ctx: dict, first: str = BOOT_STEPS[0]) -> Chain:
    """The boot's steps as one chain, from ``first`` on (a reschedule starts at the claim, a resumed boot at the
    step it stalled in)."""
    return Chain(BOOT_STEPS[BOOT_STEPS.index(first):], ctx)


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
