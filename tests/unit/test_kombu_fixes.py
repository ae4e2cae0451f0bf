"""tasks/kombu_fixes.py against the shared Redis server: a message whose channel was closed (the broker connection
dropped while its task ran) is acknowledged without killing the worker, and stays in the unacked set for the
visibility-timeout sweep; acknowledging on a live channel still removes it."""
from __future__ import annotations

import uuid

import pytest
import redis
from kombu import Connection, Exchange, Queue

import tasks.celery_app  # noqa: F401  (applies the fixes)
from tests.stack import _claim_redis_db, _port_open

pytestmark = pytest.mark.skipif(not _port_open(6379), reason="!!! REDIS IS NOT RUNNING ON 127.0.0.1:6379 !!!")


@pytest.fixture
def redis_url():
    db, key = _claim_redis_db()
    yield f"redis://127.0.0.1:6379/{db}"
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    client.flushdb()
    redis.Redis(host="127.0.0.1", port=6379, db=0).delete(key)


def _received(url: str):
    name = f"kombu-fix-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    conn = Connection(url)
    with conn.Producer() as producer:
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    message = conn.SimpleQueue(queue, no_ack=False).get(timeout=5)
    return conn, message


def _unacked(url: str, tag: str) -> bool:
    return redis.Redis.from_url(url).hexists("unacked", tag)


def test_ack_after_the_connection_closed_keeps_the_message_for_redelivery(redis_url):
    conn, message = _received(redis_url)
    assert _unacked(redis_url, message.delivery_tag)

    # The channel is closed under the running task, its pools dropped and detached from the transport (the
    # state the conductor's crash log showed: "'NoneType' object has no attribute 'client'" while acknowledging).
    message.channel.do_restore = False  # as when the broker was already gone: nothing could be put back
    conn.release()
    assert message.channel.connection is None and message.channel._pool is None
    message.ack()  # kombu alone raises AttributeError here, inside the worker's event loop
    assert _unacked(redis_url, message.delivery_tag), "the sweep must still find it to deliver it again"


def test_ack_on_a_live_channel_removes_the_message(redis_url):
    conn, message = _received(redis_url)
    try:
        message.ack()
        assert not _unacked(redis_url, message.delivery_tag)
    finally:
        conn.release()
