"""Issue 25: a compute worker process serving 50 fake hosts holds at most 3 established broker connections, on Redis
and on RabbitMQ, idle and after its pool threads stored API replies, while it still answers the liveness broadcast
(tasks/messaging/liveness.py), sends task events once asked (Flower's enable_events) and, on Redis, consumes again
after the broker restarted. Counted from the worker's own sockets (bench/many_hosts.broker_connections)."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from celery import Celery

from bench.many_hosts import broker_connections
from harness.stack import BACKENDS, NO_DATABASE_URL, REPO, VENV_BIN, poll_until, terminate
from tasks.messaging.liveness import live_queues
from tests.outage_support import PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]

HOSTS = [f"fake-{i}" for i in range(50)]
LIMIT = 3


def _labels(pid: int, port: int) -> str:
    """The worker's broker sockets as ss shows them (for a failure's message)."""
    out = subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if f"pid={pid}," in line and f":{port} " in line + " ")


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    """(kind, url, port, restart or None)."""
    if request.param == "redis":
        missing = PrivateRedis.available()
        if missing:
            pytest.skip(f"!!! PRIVATE REDIS UNAVAILABLE: {missing} !!!")
        server = PrivateRedis(durable=True)
        server.start()

        def restart() -> None:
            server.stop()
            server.start()
        try:
            yield "redis", server.url, server.port, restart
        finally:
            server.close()
        return
    backend = BACKENDS["mariadb-rabbitmq"].own()
    if backend.missing():
        pytest.skip(f"!!! RABBITMQ UNAVAILABLE: {backend.missing()} !!!")
    try:
        yield "rabbitmq", backend.broker_url(), 5672, None
    finally:
        backend.cleanup()


@pytest.fixture
def worker(broker, tmp_path):
    kind, url, port, _ = broker
    env = {**os.environ, "STRATUS_BROKER_URL": url, "STRATUS_STATE_DIR": str(tmp_path / "state"),
           "STRATUS_DATABASE_URL": NO_DATABASE_URL, "STRATUS_COMPUTE_HOSTS": ",".join(HOSTS),
           "STRATUS_REPORT_INTERVAL": "2", "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(VENV_BIN / "python"), "-m", "tasks.compute_worker"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = Celery("conns-client", broker=url, backend=url if kind == "redis" else "rpc://")
    client.conf.update(broker_transport_options={"priority_steps": [0]} if kind == "redis" else {},
                       broker_connection_timeout=4)
    try:
        assert poll_until(lambda: b"ready." in log_path.read_bytes() or proc.poll() is not None, 120)
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        yield proc, client, port
    finally:
        terminate(proc, 30)
        client.close()
        print(Path(log_path).read_text(errors="replace")[-3000:])


def _uptimes(client: Celery, n: int) -> list[str]:
    """n API-facing calls spread over the hosts; the worker stores each reply (the result backend)."""
    sent = [client.send_task("stratus.compute.host_uptime", (HOSTS[i % len(HOSTS)],),
                             queue=f"compute.{HOSTS[i % len(HOSTS)]}") for i in range(n)]
    for result in sent:
        assert "ok" in result.get(timeout=60)
    return [r.id for r in sent]


def _capture_events(client: Celery, seen: set[str], ready: threading.Event, stop: threading.Event) -> None:
    """Flower's side: every task-succeeded event's task id into ``seen``, until ``stop``."""
    def on_event(event: dict) -> None:
        if event.get("type") == "task-succeeded":
            seen.add(event["uuid"])

    with client.connection_for_read() as conn:
        receiver = client.events.Receiver(conn, handlers={"*": on_event})
        receiver.on_consume_ready = lambda *args, **kwargs: ready.set()
        threading.Thread(target=lambda: (stop.wait(), setattr(receiver, "should_stop", True)), daemon=True).start()
        receiver.capture(limit=None, timeout=None, wakeup=False)


def test_a_compute_worker_holds_at_most_three_broker_connections(broker, worker):
    kind, _, _, restart = broker
    proc, client, port = worker
    time.sleep(5)  # past start-up: registration, the first reports
    idle = broker_connections(proc.pid, port)
    assert idle <= LIMIT, f"{kind}: {idle} connections idle:\n{_labels(proc.pid, port)}"

    seen: set[str] = set()
    ready, stop = threading.Event(), threading.Event()
    events = threading.Thread(target=_capture_events, args=(client, seen, ready, stop), daemon=True)
    events.start()
    try:
        assert ready.wait(30)
        client.control.enable_events()  # what Flower broadcasts
        time.sleep(2)
        ids = _uptimes(client, 200)
        assert poll_until(lambda: set(ids) <= seen, 30), f"{len(set(ids) - seen)} of 200 tasks had no event"
    finally:
        stop.set()
        events.join(timeout=10)
    assert poll_until(lambda: live_queues(client) == {f"compute.{h}" for h in HOSTS}, 30)
    loaded = broker_connections(proc.pid, port)
    assert loaded <= LIMIT, f"{kind}: {loaded} connections after 200 replies:\n{_labels(proc.pid, port)}"

    if restart is None:
        return
    restart()
    assert poll_until(lambda: _answers(client), 90), "the worker did not consume again after the broker restart"
    assert poll_until(lambda: live_queues(client) == {f"compute.{h}" for h in HOSTS}, 30)
    after = broker_connections(proc.pid, port)
    assert after <= LIMIT, f"{kind}: {after} connections after a broker restart:\n{_labels(proc.pid, port)}"


def _answers(client: Celery) -> bool:
    try:
        return len(_uptimes(client, 20)) == 20
    except Exception:
        return False
