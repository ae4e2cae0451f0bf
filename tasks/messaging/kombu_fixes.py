"""Fixes for kombu's Redis transport and Celery's broker reconnection, applied when the Celery app is imported.

When the broker connection drops, Celery closes the old connection; closing a Redis channel first tries to
put the messages this worker holds back on their queues, through a connection that is already gone. kombu
then raises (AttributeError on the released connection, or ConnectionError), and Celery treats that as an
"Unrecoverable error" and exits the worker: a Redis restart could kill every worker. The messages are safe
without that eager restore: they stay in Redis's unacked set and the visibility-timeout sweep delivers them
again (broker_visibility_timeout). Likewise a task that was running while the connection dropped finishes after
the reconnection and acknowledges through its old, closed channel: kombu raises AttributeError there too, in the
worker's event loop, and the worker exits. That message also stays in the unacked set and comes back after the
visibility timeout; every task is idempotent (compare-and-swap on task_state), so running it again is harmless.

The same holds for a task that finishes while the broker is down on a channel Celery still thinks alive (the
consumer had not noticed the loss: its prefetch credit was all taken, so it was not reading its BRPOP socket).
kombu's ack raises before it releases the message's prefetch credit, and the worker never asked Redis for another
message again: no BRPOP, no read of the dead socket, so no reconnection and no log line, a consumer that looks
alive and consumes nothing (the Redis-restart test's lost boots, docs/architecture-notes.md). A failed ack or
reject now always releases the credit; the consumer then polls its dead socket, sees the loss and reconnects.

kombu takes a message off its queue (BRPOP) and only then registers it as unacknowledged (a second command): if the
broker stops between the two, the message exists nowhere but in this worker, which drops it with the connection.
The worker now puts such a message back on its queue as soon as the broker answers again (_requeue_unregistered).
A message Redis popped but never sent (it stopped before the reply left) cannot be saved here: see
tasks/periodic.resume_stalled_builds.

A worker that lost its broker retries connecting after 2, 4, 6 ... s (Celery passes no intervals, kombu's
defaults apply): after a broker restart each worker came back up to that step later than the broker, one
after the other along the canvas. Workers retry every RECONNECT_INTERVAL_MAX seconds at most instead.

kombu builds a new redis.Redis client for every publish, acknowledgement and unacked-set update (each copies
some 200 response callbacks: 5-7 % of a worker's CPU in bench/README.md's profiles). A channel now keeps one
client per connection pool (_reuse_sync_client): redis-py clients are thread-safe, each command takes a
connection from the pool, and a pool kombu replaces (reconnection) gets a new client.

Every publish declares its queue (Celery passes it; RabbitMQ would drop a message for a queue not yet declared),
and with publish retries on kombu wraps that in its connection-retry machinery before looking in the
connection's cache of declared entities: 3-5 % of every process's CPU in a boot storm, for a set lookup that
almost always says "declared". The cache is now looked in first (_skip_declared_quickly); kombu clears it on a
reconnection, so a queue is declared again after one, as before.

A new Redis channel checks the server with a PING on its BRPOP/subscribe connection pool and keeps that connection
open; a channel that only publishes (the producer pool's) never uses it again: one idle connection per producer
for nothing (issue 25 counts a compute worker's connections). The probe's connection is closed after the PING
(_release_probe_connection); a channel that consumes opens its BRPOP connection when it first polls."""
from __future__ import annotations

import functools
import logging
import threading
import time

LOG = logging.getLogger(__name__)

# Seconds between a worker's attempts to reach the broker again (first at once, then 1 s, then this).
RECONNECT_INTERVAL_MAX = 2
# How long a worker keeps trying to put back a message it took off its queue as the broker went away.
REQUEUE_PATIENCE = 3600.0


def apply() -> None:
    _restore_unacked_quietly()
    _ack_on_closed_channel_quietly()
    _requeue_unregistered()
    _reconnect_promptly()
    _reuse_sync_client()
    _skip_declared_quickly()
    _release_probe_connection()


def _skip_declared_quickly() -> None:
    from kombu import messaging
    original = messaging.maybe_declare
    if getattr(original, "_stratus_fixed", False):
        return

    @functools.wraps(original)
    def maybe_declare(entity, channel=None, retry=False, **retry_policy):
        connection = getattr(channel, "connection", None)
        if (retry and connection is not None and entity.can_cache_declaration
                and hash(entity) in connection.client.declared_entities):
            return False  # what kombu's own check answers, inside the retry wrapper
        return original(entity, channel, retry, **retry_policy)

    maybe_declare._stratus_fixed = True
    messaging.maybe_declare = maybe_declare


def _reuse_sync_client() -> None:
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:
        return
    original = kombu_redis.Channel._create_client
    if getattr(original, "_stratus_fixed", False):
        return

    @functools.wraps(original)
    def _create_client(self, asynchronous=False):
        if asynchronous:  # the BRPOP client kombu keeps itself (Channel.client)
            return original(self, asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_stratus_sync_client")
        if client is None or client.connection_pool is not pool:
            client = self.__dict__["_stratus_sync_client"] = original(self, asynchronous=False)
        return client

    _create_client._stratus_fixed = True
    kombu_redis.Channel._create_client = _create_client


def _release_probe_connection() -> None:
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:
        return
    original = kombu_redis.Channel.__init__
    if getattr(original, "_stratus_fixed", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        pool = self.__dict__.get("_async_pool")
        if pool is not None:
            pool.disconnect(inuse_connections=False)  # the connection of the init PING only

    __init__._stratus_fixed = True
    kombu_redis.Channel.__init__ = __init__


def _reconnect_promptly() -> None:
    from celery.worker.consumer import consumer as celery_consumer
    original = celery_consumer.Consumer.ensure_connected
    if getattr(original, "_stratus_fixed", False):
        return

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, interval_start=0, interval_step=1,
                                                   interval_max=RECONNECT_INTERVAL_MAX)
        try:
            return original(self, conn)
        finally:
            del conn.ensure_connection  # the instance attribute: the class's method again

    ensure_connected._stratus_fixed = True
    celery_consumer.Consumer.ensure_connected = ensure_connected


def _restore_unacked_quietly() -> None:
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # the redis client is not installed: nothing to fix
        return
    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "_stratus_fixed", False):
        return
    errors = (AttributeError, OSError, *_redis_errors())

    def restore_unacked(self, client=None):
        try:
            return original(self, client)
        except errors as exc:
            LOG.warning("broker connection lost: %d message(s) this worker held stay unacknowledged and are "
                        "delivered again after the visibility timeout (%s)", len(self._delivered), exc)
            self._delivered.clear()
            return None

    restore_unacked._stratus_fixed = True
    kombu_redis.QoS.restore_unacked = restore_unacked


def _ack_on_closed_channel_quietly() -> None:
    try:
        from kombu.transport import redis as kombu_redis, virtual
    except ImportError:
        return
    for name in ("ack", "reject"):
        original = getattr(kombu_redis.QoS, name)
        if getattr(original, "_stratus_fixed", False):
            continue
        setattr(kombu_redis.QoS, name, _guarded(original, virtual.QoS.ack))


def _guarded(original, forget):
    errors = (AttributeError, OSError, *_redis_errors())

    @functools.wraps(original)
    def settle(self, delivery_tag, *args, **kwargs):
        try:
            return original(self, delivery_tag, *args, **kwargs)
        except errors as exc:
            if self.channel.connection is None:
                LOG.warning("message %s finished after its broker connection was lost: it stays unacknowledged "
                            "and is delivered again after the visibility timeout (%r)", delivery_tag, exc)
            else:
                LOG.warning("message %s could not be acknowledged, the broker is unreachable: it stays "
                            "unacknowledged and is delivered again after the visibility timeout; the consumer "
                            "reconnects (%r)", delivery_tag, exc)
            # Release its prefetch credit: kombu raises before its own bookkeeping, and a channel whose credit
            # is all held by such messages never polls its queues again (no BRPOP, no reconnection).
            forget(self, delivery_tag)
            return None

    settle._stratus_fixed = True
    return settle


def _requeue_unregistered() -> None:
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:
        return
    original = kombu_redis.QoS.append
    if getattr(original, "_stratus_fixed", False):
        return
    errors = (OSError, *_redis_errors())

    @functools.wraps(original)
    def append(self, message, delivery_tag):
        try:
            return original(self, message, delivery_tag)
        except errors:
            # Taken off the queue, not in the unacked set: put it back once the broker answers, then let the
            # consumer see the connection error (it reconnects; the message is never handed to a task here).
            client = self.channel.connection.client
            info = message.delivery_info
            threading.Thread(target=requeue, name=f"requeue-{delivery_tag}", daemon=True,
                             args=(client.as_uri(include_password=True), dict(client.transport_options),
                                   message._raw, info["exchange"], info["routing_key"], delivery_tag,
                                   client.ssl)).start()
            raise

    append._stratus_fixed = True
    kombu_redis.QoS.append = append


def requeue(url: str, transport_options: dict, payload: dict, exchange: str, routing_key: str, tag: str,
            ssl: dict | bool = False, patience: float = REQUEUE_PATIENCE, interval: float = 1.0) -> bool:
    """Put ``payload`` back on the queues ``exchange``/``routing_key`` lead to (kombu's own restore path, marked
    redelivered), retrying while the broker is unreachable. Returns whether it succeeded."""
    from kombu import Connection
    from kombu.exceptions import OperationalError
    errors = (OSError, OperationalError, *_redis_errors())
    LOG.warning("message %s was taken off its queue as the broker connection dropped, before it was registered "
                "as unacknowledged: it goes back on its queue when the broker answers", tag)
    give_up = time.monotonic() + patience
    last_error: BaseException | None = None
    while time.monotonic() < give_up:
        try:
            with Connection(url, transport_options=transport_options, connect_timeout=2, ssl=ssl) as conn:
                channel = conn.default_channel
                with channel.conn_or_acquire() as client:
                    pipe = client.pipeline()
                    channel._do_restore_message(payload, exchange, routing_key, pipe)
                    pipe.execute()
            LOG.warning("message %s is back on its queue", tag)
            return True
        except errors as exc:
            last_error = exc
            time.sleep(interval)
    LOG.error("message %s could not be put back on its queue within %.0f s and is lost (%r)", tag, patience,
              last_error)
    return False


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
    return RedisConnectionError, RedisTimeoutError
