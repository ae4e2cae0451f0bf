"""Whether this worker's task consumer is really consuming, and which queues live consumers serve.

A consumer can look alive and consume nothing: its event loop blocked, or (the Redis-restart test's lost boots,
docs/architecture-notes.md) its prefetch credit held by messages no task holds any more, so it never asks the broker
for another one. ``ConsumerWatch``, a consumer bootstep of every Stratus worker, checks from the event loop's own
timer every CHECK_INTERVAL seconds; ``consumer_alive()`` answers from any thread (the compute worker's heartbeat
stops while the answer is no, so its hosts show down), and the ``stratus_consuming`` control command answers a
broadcast only with the queues of a live consumer (``live_queues()``: tasks/periodic.resume_stalled_builds sends
a step only to a queue someone consumes). A blocked event loop does not answer the broadcast at all."""
from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.control import control_command

LOG = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
# The event loop's timer stamps each check; no stamp for this long: the loop is stuck.
LOOP_SILENCE_MAX = 30.0
# Prefetch credit all taken while the worker holds no request for this long: the consumer is starved.
STARVED_MAX = 10.0

_lock = threading.Lock()
_consumer: Any = None
_last_check = 0.0
_starved_since: float | None = None
_stacks_logged_for = 0.0  # the _last_check whose silence was explained with every thread's stack


def _credit_held_by_no_request(consumer: Any) -> bool:
    """The channel counts every prefetch slot taken, yet this worker holds no message (virtual transports: Redis,
    filesystem; AMQP's credit is the broker's and is released with the connection)."""
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    qos = getattr(channel, "qos", None)
    can_consume = getattr(qos, "can_consume", None)
    if can_consume is None or can_consume():
        return False
    return not (worker_state.reserved_requests or worker_state.active_requests or worker_state.scheduled_requests)


def check(consumer: Any, now: float | None = None) -> None:
    """One check, from the consumer's event loop."""
    global _consumer, _last_check, _starved_since
    now = time.monotonic() if now is None else now
    starved = _credit_held_by_no_request(consumer)
    with _lock:
        _consumer, _last_check = consumer, now
        if not starved:
            _starved_since = None
        elif _starved_since is None:
            _starved_since = now
        elif now - _starved_since >= STARVED_MAX:
            LOG.error("the task consumer is starved: its prefetch credit is taken and no task holds a message "
                      "(%.0f s); it consumes nothing", now - _starved_since)


def consumer_alive(now: float | None = None) -> tuple[bool, str]:
    """(alive, why not)."""
    now = time.monotonic() if now is None else now
    with _lock:
        consumer, last, starved_since = _consumer, _last_check, _starved_since
    if consumer is None:
        return False, "the task consumer has not started"
    if getattr(consumer, "connection", None) is None:
        return False, "the task consumer has no broker connection"
    if now - last > LOOP_SILENCE_MAX:
        _log_stacks_once(last)
        return False, f"the consumer's event loop has not run for {now - last:.0f} s"
    if starved_since is not None and now - starved_since >= STARVED_MAX:
        return False, f"the task consumer is starved (credit held by no task for {now - starved_since:.0f} s)"
    return True, ""


def _log_stacks_once(last: float) -> None:
    """Once per silence: where every thread of this process is, so a stuck event loop shows what holds it."""
    global _stacks_logged_for
    with _lock:
        if _stacks_logged_for == last:
            return
        _stacks_logged_for = last
    names = {t.ident: t.name for t in threading.enumerate()}
    dump = "".join(f"\n--- thread {names.get(ident, '?')} ({ident}) ---\n" + "".join(traceback.format_stack(frame))
                   for ident, frame in sys._current_frames().items())
    LOG.error("the consumer's event loop is silent; the stacks of this process's threads:%s", dump)


def reset() -> None:
    """Forget the consumer (tests)."""
    global _consumer, _last_check, _starved_since, _stacks_logged_for
    with _lock:
        _consumer, _last_check, _starved_since, _stacks_logged_for = None, 0.0, None, 0.0


class ConsumerWatch(bootsteps.StartStopStep):
    """Checks the task consumer from its event loop's timer, from each (re)connection on."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.tref = None

    def start(self, c):
        self.stop(c)
        check(c)
        self.tref = c.timer.call_repeatedly(CHECK_INTERVAL, check, (c,))

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


@control_command()
def stratus_consuming(state) -> dict:
    """The queues this worker consumes, if its consumer is alive (none otherwise, with the reason)."""
    alive, why = consumer_alive()
    consumer = state.consumer
    queues = [q.name for q in consumer.task_consumer.queues] if alive and consumer.task_consumer else []
    return {"alive": alive, "why": why, "queues": queues}


def live_queues(app: Any, timeout: float = 2.0) -> set[str] | None:
    """The queues some live consumer serves, from a broadcast; None when the broadcast itself failed (unknown)."""
    try:
        replies = app.control.broadcast("stratus_consuming", reply=True, timeout=timeout)
    except Exception as exc:  # the broker is unreachable: nothing can be sent anyway
        LOG.warning("could not ask the workers which queues they consume: %s", exc)
        return None
    queues: set[str] = set()
    for reply in replies or ():
        for answer in reply.values():
            if isinstance(answer, dict):
                queues.update(answer.get("queues", ()))
    return queues


def install(app: Any) -> None:
    app.steps["consumer"].add(ConsumerWatch)
