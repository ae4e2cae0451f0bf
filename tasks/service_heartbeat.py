"""Heartbeats of the conductor and scheduler workers: every ``report_interval`` a worker that consumes the
``conductor`` or ``scheduler`` queue sends ``stratus.conductor.service_heartbeat`` (this machine's host name and
its Nova binary), so GET /os-services shows ``nova-conductor`` and ``nova-scheduler`` rows whose state is up only
while such a worker runs (Nova's servicegroup DB driver). The message expires after one interval: a heartbeat
that waited in the queue longer (the conductors were down) is dropped instead of marking its sender up, and no
heartbeat is sent while the worker's own consumer is dead (tasks/messaging/liveness.py)."""
from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from core.services import BINARY_OF_QUEUE
from core.settings import get_settings
from tasks.messaging.celery_app import celery
from tasks.messaging.liveness import consumer_alive

LOG = logging.getLogger(__name__)
_stop = threading.Event()


def binaries_of(queues: set[str]) -> list[str]:
    """The Nova binaries a worker consuming ``queues`` is (none for a compute worker)."""
    return [binary for queue, binary in BINARY_OF_QUEUE.items() if queue in queues]


def send_heartbeats(host: str, binaries: list[str]) -> None:
    interval = get_settings().report_interval
    for binary in binaries:
        celery.send_task("stratus.conductor.service_heartbeat", args=(host, binary), queue="conductor",
                         expires=interval)


def heartbeat_loop(host: str, binaries: list[str], stop: threading.Event) -> None:
    """Until ``stop``: a heartbeat per binary each interval; a failed send (broker away) is retried next time."""
    interval = get_settings().report_interval
    while True:
        try:
            alive, why = consumer_alive()
            if alive:
                send_heartbeats(host, binaries)
            else:  # a worker whose consumer is dead must not look up (issue 27)
                LOG.error("%s: no heartbeat, %s", ", ".join(binaries), why)
        except Exception as exc:
            LOG.warning("%s heartbeat failed, trying again in %s s: %s", ", ".join(binaries), interval, exc)
        if stop.wait(interval):
            return


@worker_ready.connect(weak=False)
def _start(sender: Any = None, **_: Any) -> None:
    try:
        queues = {q.name for q in sender.app.amqp.queues.consume_from.values()}
    except AttributeError:
        return
    binaries = binaries_of(queues)
    if binaries:
        _stop.clear()
        threading.Thread(target=heartbeat_loop, args=(socket.gethostname(), binaries, _stop),
                         name="service-heartbeat", daemon=True).start()


@worker_shutdown.connect(weak=False)
def _end(**_: Any) -> None:
    _stop.set()
