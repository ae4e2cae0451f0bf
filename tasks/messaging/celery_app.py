"""The one Celery application of Stratus (``celery -A tasks.messaging.celery_app``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, Task

from tasks.messaging import fast_json, kombu_fixes, liveness
from tasks.messaging.transient import transient_errors

kombu_fixes.apply()
fast_json.install()


# What Flower and the logs show of a canvas step's ctx: these keys (the rest, e.g. the scheduler's explanation,
# stays in the message). Celery's own saferepr of the whole ctx cost about 5 % of a step's CPU.
_CTX_SHOWN = ("instance_uuid", "action", "request_id", "host", "task_state")


def ctx_argsrepr(args: Sequence[Any]) -> str | None:
    """The argsrepr of a step whose first argument is a ctx; None for other arguments."""
    ctx = args[0]
    if not isinstance(ctx, dict) or "instance_uuid" not in ctx:
        return None
    shown = {k: ctx[k] for k in _CTX_SHOWN if k in ctx}
    return repr((shown, *args[1:])) if len(args) > 1 else f"({shown!r},)"


class StratusTask(Task):
    """Every task retries, with exponential backoff and jitter, when the database, the broker or a hypervisor
    connection is briefly unavailable (about three minutes in all); a lasting failure then surfaces as usual.
    API-facing tasks opt out (``autoretry_for=()``): the API is waiting and answers 503 instead."""
    autoretry_for = property(lambda self: transient_errors())  # read when a task is defined (after its imports)
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 10
    # A canvas step returns its ctx; the worker's "succeeded" log line shows its head, not up to 1 KiB of it.
    resultrepr_maxsize = 160

    def apply_async(self, args=None, kwargs=None, **options):
        # A canvas step forwarded by the worker's tracer: Flower and the logs show the ctx's identifying keys
        # (ctx_argsrepr) instead of Celery's saferepr of the whole dict.
        if args and "argsrepr" not in options and not kwargs:
            argsrepr = ctx_argsrepr(args)
            if argsrepr is not None:
                options.update(argsrepr=argsrepr, kwargsrepr="{}")
        return super().apply_async(args, kwargs, **options)


celery = Celery("stratus", task_cls=StratusTask,
                include=["tasks.conductor.boot", "tasks.conductor.actions", "tasks.conductor.moves",
                         "tasks.conductor.live", "tasks.conductor.admin", "tasks.conductor.placement",
                         "tasks.scheduler", "tasks.compute", "tasks.compute_actions", "tasks.periodic",
                         "tasks.reconcile", "tasks.service_heartbeat"])
celery.config_from_object("celeryconfig")
liveness.install(celery)
app = celery
