"""tasks/messaging/rpc_results.py against a broker that is down (a closed port): calls fail fast under the caller's retry
policy, and a failed reconnection leaves no dead consumer behind."""
from __future__ import annotations

import time

import pytest
from celery import Celery
from kombu.exceptions import OperationalError

from harness.stack import free_port

POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


@pytest.fixture
def app():
    app = Celery("rpc-results-test", broker=f"amqp://guest:guest@127.0.0.1:{free_port()}//",
                 backend="tasks.messaging.rpc_results:RPCBackend+rpc://")
    app.conf.broker_connection_timeout = 1
    app.conf.result_backend_transport_options = {"retry_policy": POLICY}
    yield app
    app.close()


def test_send_fails_fast_while_the_broker_is_down(app):
    t0 = time.monotonic()
    with pytest.raises((OperationalError, OSError)):
        app.send_task("stratus.anything", retry=True, retry_policy=POLICY)
    assert time.monotonic() - t0 < 10  # the stock backend retried the reply-queue declaration forever


def test_failed_reconnect_forgets_the_dead_consumer(app):
    consumer = app.backend.result_consumer

    class DeadConsumer:
        queues = [app.backend.binding]

        def cancel(self):
            raise OSError("connection reset")

    consumer._consumer = DeadConsumer()
    consumer._connection = app.connection()
    consumer._connection_errors = consumer._connection.connection_errors + consumer._connection.channel_errors
    with pytest.raises(OperationalError):
        consumer._reconnect()
    assert consumer._consumer is None and consumer._connection is None
