"""tasks/messaging/liveness.py: a consumer whose prefetch credit is held by no request, or whose event loop stopped
checking, is not alive; the compute heartbeat says nothing while it is not."""
from __future__ import annotations

import types

import pytest
from celery.worker import state as worker_state

from tasks.messaging import liveness


class _QoS:
    def __init__(self, free: bool):
        self.free = free

    def can_consume(self) -> bool:
        return self.free


def _consumer(free: bool) -> object:
    channel = types.SimpleNamespace(qos=_QoS(free))
    return types.SimpleNamespace(connection=object(), task_consumer=types.SimpleNamespace(channel=channel))


@pytest.fixture(autouse=True)
def _fresh():
    liveness.reset()
    yield
    liveness.reset()


def test_a_consumer_with_credit_is_alive():
    liveness.check(_consumer(free=True), now=100.0)
    assert liveness.consumer_alive(now=101.0) == (True, "")


def test_credit_held_by_no_request_is_a_dead_consumer(caplog):
    consumer = _consumer(free=False)
    assert not worker_state.reserved_requests and not worker_state.active_requests
    liveness.check(consumer, now=100.0)
    assert liveness.consumer_alive(now=101.0)[0], "a moment without credit is normal"
    liveness.check(consumer, now=100.0 + liveness.STARVED_MAX)
    alive, why = liveness.consumer_alive(now=100.0 + liveness.STARVED_MAX)
    assert not alive and "starved" in why
    assert "the task consumer is starved" in caplog.text
    consumer.task_consumer.channel.qos.free = True  # credit back: alive again
    liveness.check(consumer, now=120.0)
    assert liveness.consumer_alive(now=120.0)[0]


def test_credit_held_by_running_tasks_is_a_busy_consumer(monkeypatch):
    monkeypatch.setattr(worker_state, "active_requests", {object()})
    consumer = _consumer(free=False)
    liveness.check(consumer, now=100.0)
    liveness.check(consumer, now=200.0)
    assert liveness.consumer_alive(now=200.0) == (True, "")


def test_an_event_loop_that_stopped_checking_is_not_alive():
    liveness.check(_consumer(free=True), now=100.0)
    alive, why = liveness.consumer_alive(now=100.0 + liveness.LOOP_SILENCE_MAX + 1)
    assert not alive and "event loop" in why


def test_a_silent_event_loop_logs_every_threads_stack_once(caplog):
    liveness.check(_consumer(free=True), now=100.0)
    late = 100.0 + liveness.LOOP_SILENCE_MAX + 1
    liveness.consumer_alive(now=late)
    liveness.consumer_alive(now=late + 2)
    dumps = [r for r in caplog.records if "stacks of this process's threads" in r.getMessage()]
    assert len(dumps) == 1
    assert "test_a_silent_event_loop_logs_every_threads_stack_once" in dumps[0].getMessage()  # this thread's frame
    liveness.check(_consumer(free=True), now=200.0)  # the loop ran again, then fell silent again: a new dump
    liveness.consumer_alive(now=200.0 + liveness.LOOP_SILENCE_MAX + 1)
    assert len([r for r in caplog.records if "stacks of this process's threads" in r.getMessage()]) == 2


def test_no_consumer_or_no_connection_is_not_alive():
    assert not liveness.consumer_alive()[0]
    consumer = _consumer(free=True)
    liveness.check(consumer)
    consumer.connection = None  # reconnecting
    assert liveness.consumer_alive() == (False, "the task consumer has no broker connection")


def test_the_compute_heartbeat_stops_while_the_consumer_is_dead(monkeypatch):
    from tasks import compute
    sent: list[str] = []
    monkeypatch.setattr(compute, "_inventory", lambda host: {"up": True})
    monkeypatch.setattr(compute.celery, "send_task", lambda name, **kw: sent.append(name))
    monkeypatch.setattr(compute.sync_power_states, "apply_async", lambda *a, **kw: None)
    monkeypatch.setattr(compute, "_reconcile_all", lambda ready: [])
    monkeypatch.setattr(compute, "consumer_alive", lambda: (False, "the task consumer is starved"))
    assert compute._heartbeat_tick(["h1"], ["h1"], [], 3) == (["h1"], [])
    assert sent == []
    monkeypatch.setattr(compute, "consumer_alive", lambda: (True, ""))
    compute._heartbeat_tick(["h1"], ["h1"], [], 3)
    assert sent == ["stratus.conductor.heartbeat"]
