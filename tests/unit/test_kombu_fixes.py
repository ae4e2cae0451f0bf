"""tasks/messaging/kombu_fixes.py against the shared Redis server: a message whose channel was closed (the broker connection
dropped while its task ran) is acknowledged without killing the worker, and stays in the unacked set for the
visibility-timeout sweep; acknowledging on a live channel still removes it."""
from __future__ import annotations

import time
import uuid

import pytest
import redis
from kombu import Connection, Exchange, Queue

import tasks.messaging.celery_app  # noqa: F401  (applies the fixes)
from harness.stack import _claim_redis_db, _port_open

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


def test_a_message_taken_as_the_broker_stops_goes_back_on_its_queue(monkeypatch):
    """The window of kombu's Redis transport: BRPOP/RPOP has removed the message from its queue, and the broker
    stops before the message is registered as unacknowledged. The worker puts it back once the broker returns."""
    from kombu.transport import redis as kombu_redis

    from tests.outage_support import PrivateRedis
    missing = PrivateRedis.available()
    if missing:
        pytest.skip(f"!!! PRIVATE REDIS UNAVAILABLE: {missing} !!!")
    server = PrivateRedis(durable=True)
    server.start()
    try:
        name = f"kombu-fix-{uuid.uuid4().hex[:8]}"
        queue = Queue(name, Exchange(name), routing_key=name)
        with Connection(server.url) as conn:
            with conn.Producer() as producer:
                producer.publish({"n": 7}, exchange=queue.exchange, routing_key=name, declare=[queue])

            def broker_stops(self, pipe=None, client=None):
                server.stop()
                raise redis.ConnectionError("Connection closed by server.")
            monkeypatch.setattr(kombu_redis.QoS, "pipe_or_acquire", broker_stops)
            with pytest.raises(redis.ConnectionError):
                queue(conn.default_channel).get(no_ack=False)
            monkeypatch.undo()

        time.sleep(2)  # the worker's first attempts to put it back meet a stopped broker
        server.start()
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 20
        while not client.llen(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        with Connection(server.url) as conn:
            message = queue(conn.default_channel).get(no_ack=True)
            assert message is not None, "the message was lost"
            assert message.payload == {"n": 7} and message.delivery_info.get("redelivered") is True
        assert client.hlen("unacked") == 0
    finally:
        server.close()


def test_putting_back_gives_up_after_its_patience_and_says_so(caplog):
    from tasks.messaging.kombu_fixes import requeue
    from harness.stack import free_port
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    assert not requeue(url, {}, {"body": "{}"}, "x", "x", "tag-1", patience=0.5, interval=0.1)
    assert "tag-1 could not be put back" in caplog.text


def test_a_channel_reuses_one_redis_client_per_pool(redis_url):
    conn = Connection(redis_url)
    try:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        assert channel._create_client(asynchronous=True) is not first  # the BRPOP client stays kombu's own
        old_pool, channel._pool = channel._pool, None  # kombu drops the pool on a reconnection
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool is not old_pool
            assert third.ping()
        old_pool.disconnect()
    finally:
        conn.release()


def test_a_declared_queue_skips_the_retry_wrapper_until_a_reconnection(redis_url, monkeypatch):
    name = f"kombu-fix-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    conn = Connection(redis_url)
    ensured: list[object] = []
    original_ensure = Connection.ensure

    def ensure(self, obj, fun, *args, **kwargs):
        ensured.append(getattr(fun, "__name__", fun))
        return original_ensure(self, obj, fun, *args, **kwargs)

    monkeypatch.setattr(Connection, "ensure", ensure)
    try:
        def publish() -> None:
            with conn.Producer() as producer:
                producer.publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue], retry=True,
                                 retry_policy={"max_retries": 1})
        publish()
        assert "_maybe_declare" in ensured  # the first publish declares through kombu's retry path
        ensured.clear()
        publish()
        publish()
        assert "_maybe_declare" not in ensured and ensured  # cached: straight to the (retried) publish
        conn.declared_entities.clear()  # what kombu does when the connection is re-established
        publish()
        assert "_maybe_declare" in ensured
        assert redis.Redis.from_url(redis_url).llen(name) == 4  # every message reached its queue
    finally:
        conn.release()


def test_an_ack_that_fails_on_a_live_channel_gives_its_credit_back():
    """The lost boots of the Redis-restart test: every prefetch slot of a consumer was taken when the broker stopped,
    the tasks finished during the outage and their acks failed. kombu raised before releasing the credit, so the
    channel never polled its queue again: no read of its dead socket, no reconnection, nothing consumed."""
    from tests.outage_support import PrivateRedis
    missing = PrivateRedis.available()
    if missing:
        pytest.skip(f"!!! PRIVATE REDIS UNAVAILABLE: {missing} !!!")
    server = PrivateRedis(durable=True)
    server.start()
    try:
        name = f"kombu-fix-{uuid.uuid4().hex[:8]}"
        queue = Queue(name, Exchange(name), routing_key=name)

        def publish(n: int) -> None:
            with Connection(server.url) as producer_conn:
                producer_conn.Producer().publish({"n": n}, exchange=queue.exchange, routing_key=name,
                                                 declare=[queue])

        received = []
        publish(1)
        with Connection(server.url) as conn:
            channel = conn.channel()
            channel.basic_qos(0, 1, False)  # the scheduler's credit: one per thread, all taken
            conn.Consumer(queue, channel=channel, callbacks=[lambda body, m: received.append(m)]).consume()
            conn.drain_events(timeout=5)
            assert len(received) == 1 and not channel.qos.can_consume()
            server.stop()
            received[0].ack()  # the task finished during the outage; kombu alone raises here, holding the credit
            assert channel.qos.can_consume(), "the failed ack kept the prefetch credit: the consumer is dead"
            server.start()
            publish(2)
            with pytest.raises(conn.connection_errors):
                conn.drain_events(timeout=5)  # the consumer reads its dead socket: Celery reconnects on this
        with Connection(server.url) as conn:  # what the reconnected consumer gets
            message = queue(conn.default_channel).get(no_ack=True)
            assert message is not None and message.payload == {"n": 2}
        assert redis.Redis.from_url(server.url).hexists("unacked", received[0].delivery_tag), \
            "the unacknowledged message must stay for the visibility-timeout sweep"
    finally:
        server.close()


def _open_connections(url: str) -> int:
    db = int(url.rsplit("/", 1)[1])
    return sum(1 for c in redis.Redis(host="127.0.0.1", port=6379).client_list() if c["db"] == str(db))


def test_a_publishing_channel_holds_one_connection_and_a_consuming_one_still_consumes(redis_url):
    """Issue 25: a new channel's PING kept its connection open, unused by a channel that only publishes (every
    producer held two connections). It is closed after the PING; a consumer opens its BRPOP connection."""
    before = _open_connections(redis_url)
    conn = Connection(redis_url)
    try:
        name = f"probe-{uuid.uuid4().hex[:8]}"
        queue = Queue(name, Exchange(name), routing_key=name)
        with conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
        assert _open_connections(redis_url) - before == 1  # the publishes' command connection only
        assert conn.SimpleQueue(queue, no_ack=True).get(timeout=5).payload == {"n": 1}
    finally:
        conn.release()
