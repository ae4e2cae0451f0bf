"""A Celery worker (the threads pool of the scheduler and conductor) across a restart of its private Redis, with
the broker stopped at a chosen point of the consumer's cycle: every prefetch slot taken by a running task, the tasks
finishing while the broker is down. The worker must consume again once the broker is back (docs/architecture-notes.md,
"Consumers across a broker restart")."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from celery import Celery

from harness.stack import VENV_BIN, poll_until, terminate
from tasks.messaging.liveness import live_queues
from tests.outage_support import PrivateRedis

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_worker(tmp_path):
    missing = PrivateRedis.available()
    if missing:
        pytest.skip(f"!!! PRIVATE REDIS UNAVAILABLE: {missing} !!!")
    server = PrivateRedis(durable=True)
    server.start()
    env = {**os.environ, "STRATUS_BROKER_URL": server.url, "STRATUS_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "tests.functional.probe_app", "worker", "-Q", "probe",
                               "-n", "probe@%h", "--pool", "threads", "--concurrency", "2", "-l", "INFO"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    client = Celery("probe-client", broker=server.url)
    client.conf.update(task_default_queue="probe", broker_transport_options={"priority_steps": [0]})
    try:
        yield server, client, tmp_path, worker
    finally:
        terminate(worker, 20)
        log.close()
        print((tmp_path / "worker.log").read_text(errors="replace")[-4000:])
        client.close()
        server.close()


def test_a_worker_whose_slots_were_all_taken_consumes_again_after_a_redis_restart(redis_worker):
    server, client, tmp, _ = redis_worker
    d = str(tmp)
    client.send_task("probe.mark", (d, "ready"))
    assert poll_until(lambda: (tmp / "ready.done").exists(), 120), "the worker never consumed"
    for name in ("slot-1", "slot-2"):  # concurrency 2, prefetch multiplier 1: both slots
        client.send_task("probe.hold", (d, name, 3))
    assert poll_until(lambda: all((tmp / f"slot-{i}.started").exists() for i in (1, 2)), 60)
    server.stop()  # the consumer is not reading its BRPOP socket: no credit left
    assert poll_until(lambda: all((tmp / f"slot-{i}.done").exists() for i in (1, 2)), 60)
    time.sleep(2)  # their acknowledgements meet a stopped broker
    server.start()
    client.send_task("probe.mark", (d, "after"))
    assert poll_until(lambda: (tmp / "after.done").exists(), 60), \
        "a task sent after the broker came back was never consumed: the consumer is dead"
    assert poll_until(lambda: "probe" in (live_queues(client) or ()), 30)


def test_a_worker_whose_event_loop_stands_still_serves_no_queue(redis_worker):
    """resume_stalled_builds asks which queues live consumers serve (liveness.live_queues): a worker whose event
    loop does not run (stopped here) does not answer, so nothing is sent to its queue."""
    _, client, tmp, worker = redis_worker
    client.send_task("probe.mark", (str(tmp), "ready"))
    assert poll_until(lambda: (tmp / "ready.done").exists(), 120), "the worker never consumed"
    assert poll_until(lambda: live_queues(client) == {"probe"}, 30)
    worker.send_signal(signal.SIGSTOP)
    try:
        assert live_queues(client) == set()
    finally:
        worker.send_signal(signal.SIGCONT)
    assert poll_until(lambda: live_queues(client) == {"probe"}, 30)


def test_a_worker_consumes_again_after_each_of_20_redis_restarts_at_random_points(redis_worker):
    """The Redis-restart loss hunted as issue 27 asks: tasks of random lengths arrive all the time (the consumer is
    reading, prefetching, running, acknowledging), and the broker stops at a random point of that cycle for a random
    0.5-2.5 s, twenty times. After every restart a task sent to the queue must run within 30 s."""
    server, client, tmp, _ = redis_worker
    d = str(tmp)
    client.conf.update(task_publish_retry=False, broker_connection_timeout=1,
                       broker_transport_options={"priority_steps": [0], "socket_connect_timeout": 1})
    client.send_task("probe.mark", (d, "ready"))
    assert poll_until(lambda: (tmp / "ready.done").exists(), 120), "the worker never consumed"
    rng = random.Random(int(os.environ.get("STRATUS_TEST_SEED", "27")))
    stop, sent = threading.Event(), []

    def load() -> None:  # ~6 tasks/s of 20-200 ms on two threads: busy, not backlogged
        while not stop.is_set():
            name = f"h{len(sent)}"
            try:
                client.send_task("probe.hold", (d, name, rng.uniform(0.02, 0.2)))
                sent.append(name)
            except Exception:  # the broker is down: refused, as the API's 503
                time.sleep(0.2)
            time.sleep(rng.uniform(0.05, 0.25))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        for i in range(20):
            time.sleep(rng.uniform(0.2, 2.0))
            server.stop()
            time.sleep(rng.uniform(0.5, 2.5))
            server.start()
            assert poll_until(lambda: _sent(client, "probe.mark", (d, f"check-{i}")), 30), "could not publish"
            assert poll_until(lambda: (tmp / f"check-{i}.done").exists(), 30), \
                f"restart {i + 1}: a task sent after the broker came back did not run within 30 s"
    finally:
        stop.set()
        loader.join(timeout=10)
    ran = sum(1 for name in sent if (tmp / f"{name}.done").exists())
    print(f"20 restarts: {len(sent)} tasks accepted by the broker, {ran} ran by now")


def _sent(client: Celery, name: str, args: tuple) -> bool:
    try:
        client.send_task(name, args)
        return True
    except Exception:
        return False
