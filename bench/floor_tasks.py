"""No-op stand-ins for the boot's six broker hops, on Stratus's own Celery app (``celery -A bench.floor_tasks``).

The same app, configuration, routes, kombu fixes, pools and message shapes as a boot (bench/celery_floor.py
starts the workers as the Procfile does): an RPC whose result the caller waits for, which publishes a five-step
chain (scheduler → conductor → compute → compute → conductor) with tasks.common.Chain; and a delete's:
an RPC that publishes terminate (compute) → finish (conductor). Each step only copies the
ctx and adds a key, so what the workers spend is the floor that Celery, kombu and the broker set for a boot.
"""
from __future__ import annotations

import os

from celery.signals import worker_ready

from tasks import reconcile
from tasks.common import Chain
from tasks.messaging.celery_app import celery

# No database here: the conductor's start-up sweep of stuck instances would only fail and retry.
worker_ready.disconnect(reconcile.expire_on_conductor_start)

# The boot's hops as issue 30 found them (six with the RPC; the boot itself now has five: build_disk and spawn are
# one step), kept so that floors measured before and after compare.
STEPS = ("stratus.scheduler.bench_floor_schedule", "stratus.conductor.bench_floor_claim",
         "stratus.compute.bench_floor_build_disk", "stratus.compute.bench_floor_spawn",
         "stratus.conductor.bench_floor_finish")


@celery.task(name="stratus.conductor.bench_floor_create", acks_late=False, autoretry_for=())
def create(ctx: dict) -> dict:
    Chain(STEPS, ctx).apply_async()
    return {"ok": {"uuids": [ctx["instance_uuid"]]}}


# A delete's hops: the API's RPC (the conductor's CAS into deleting), then terminate on the host and finish_delete.
DELETE_STEPS = ("stratus.compute.bench_floor_terminate", "stratus.conductor.bench_floor_finish")


@celery.task(name="stratus.conductor.bench_floor_delete", acks_late=False, autoretry_for=())
def delete(ctx: dict) -> dict:
    Chain(DELETE_STEPS, ctx).apply_async()
    return {"ok": {"instance_uuid": ctx["instance_uuid"]}}


def _step(key: str):
    def run(ctx: dict) -> dict:
        return {**ctx, key: True}
    return run


schedule = celery.task(name=STEPS[0], ignore_result=True)(_step("hosts"))
claim = celery.task(name=STEPS[1], ignore_result=True)(_step("claimed"))
build_disk = celery.task(name=STEPS[2], ignore_result=True)(_step("disk"))
spawn = celery.task(name=STEPS[3], ignore_result=True)(_step("spawned"))
terminate = celery.task(name=DELETE_STEPS[0], ignore_result=True)(_step("terminated"))


@celery.task(name=STEPS[4], ignore_result=True)
def finish(ctx: dict) -> None:
    # One line per finished chain (any broker: no Redis needed to count); O_APPEND writes of a line are atomic.
    fd = os.open(os.environ["STRATUS_BENCH_FLOOR_DONE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (ctx["instance_uuid"] + "\n").encode())
    finally:
        os.close(fd)
