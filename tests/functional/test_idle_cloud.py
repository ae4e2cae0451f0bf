"""An idle cloud sends (almost) no tasks: the tasks a settled stack's workers receive in one minute, by name.

The stack runs every process that sends tasks on its own (conductor, scheduler, one compute worker serving two
fake hosts, beat) at the default report_interval (10 s), on Redis (Celery's task events cross processes there,
as Flower reads them). The count comes from the workers' ``task-received`` events, which the test turns on as
Flower does (the ``enable_events`` broadcast): every task sent to a queue some worker consumes shows up once.

What an idle minute may hold, and why:
- ``heartbeat``: the compute worker's one report per report_interval for all its hosts, which keeps them "up"
  (Nova's service report, every report_interval too) and carries the inventories that changed (none when idle);
- ``service_heartbeat``: one per report_interval from the conductor worker and one from the scheduler worker,
  which keep their ``nova-conductor`` and ``nova-scheduler`` rows up (Nova's conductor and scheduler report too);
- ``compute.sync_power_states``: one per report_interval for all of a worker's hosts, as Nova's
  _sync_power_states; it sends nothing on to the conductor while no guest changed;
- beat's housekeeping: ``expire_stuck_instances`` every 60 s, ``resume_stalled_builds`` every 30 s,
  ``audit_allocations`` every 300 s, ``purge_expired_tokens`` every 600 s.
Nothing else: in particular no ``reclaim_soft_deleted`` while reclaim_instance_interval is 0 (Nova skips its
_reclaim_queued_deletes then; it used to be sent every second, 60 a minute).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.stack import REPO, Backend, Stack

pytestmark = [pytest.mark.services, pytest.mark.slow]

WINDOW = 60.0
REPORT_INTERVAL = 10
PER_WINDOW = int(WINDOW // REPORT_INTERVAL)  # 6 reports (and power syncs) a minute

# Turn task events on (Flower's broadcast), let the workers start sending them, then count for WINDOW seconds.
_COUNT_RECEIVED = """
import collections, json, sys, threading, time
from tasks.messaging.celery_app import celery
warmup, window = float(sys.argv[1]), float(sys.argv[2])
seen = []
with celery.connection_for_read() as conn:
    recv = celery.events.Receiver(conn, handlers={
        "task-received": lambda event: seen.append((time.monotonic(), event["name"]))})
    recv.should_stop = False
    start = time.monotonic()
    threading.Timer(0.5, celery.control.enable_events).start()
    threading.Timer(warmup + window, lambda: setattr(recv, "should_stop", True)).start()
    recv.capture(limit=None, timeout=None, wakeup=False)
counts = collections.Counter(name for t, name in seen if start + warmup <= t < start + warmup + window)
print(json.dumps(counts))
"""


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory):
    backend = Backend("sqlite-redis", "sqlite", "redis")
    missing = backend.missing()
    if missing:
        pytest.skip(f"!!! IDLE CLOUD TEST SKIPPED: {missing} !!!")
    st = Stack(tmp_path_factory.mktemp("idle"), backend, compute_hosts="fake-1,fake-2",
               extra_env={"STRATUS_REPORT_INTERVAL": str(REPORT_INTERVAL)},
               processes=("api", "conductor", "scheduler", "compute", "beat"))
    try:
        st.start()
        yield st
    finally:
        st.stop()


def test_idle_cloud_sends_only_reports_and_housekeeping(idle_stack):
    # (the stack is settled once its hosts registered; the warm-up lets beat's first due tasks and the
    # workers' event switch-on pass before the window opens)
    run = subprocess.run([sys.executable, "-c", _COUNT_RECEIVED, "10", str(WINDOW)], cwd=REPO, env=idle_stack.env,
                         capture_output=True, text=True, timeout=WINDOW + 60)
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"tasks received in {WINDOW:.0f} s of an idle cloud: {counts}")
    # 6 reports + 6 power syncs + 12 conductor/scheduler heartbeats + beat's 2-3: about 27 a minute (it was 75 with
    # reclaim every second)
    assert sum(counts.values()) <= 4 * (PER_WINDOW + 1) + 4, counts

    assert counts.get("stratus.conductor.reclaim_soft_deleted", 0) == 0, "reclaim is off (interval 0)"
    reports = counts.pop("stratus.conductor.heartbeat", 0)
    assert PER_WINDOW - 1 <= reports <= PER_WINDOW + 1, counts
    service_beats = counts.pop("stratus.conductor.service_heartbeat", 0)
    assert 2 * (PER_WINDOW - 1) <= service_beats <= 2 * (PER_WINDOW + 1), counts
    syncs = counts.pop("stratus.compute.sync_power_states", 0)
    assert PER_WINDOW - 1 <= syncs <= PER_WINDOW + 1, counts
    beat_bounds = {"stratus.conductor.expire_stuck_instances": (0, 2), "stratus.conductor.resume_stalled_builds": (1, 3),
                   "stratus.conductor.audit_allocations": (0, 1), "stratus.conductor.purge_expired_tokens": (0, 1)}
    for name, (low, high) in beat_bounds.items():
        assert low <= counts.pop(name, 0) <= high, (name, counts)
    assert counts == {}, f"tasks an idle cloud should not send: {counts}"
