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

A worker that lost its broker retries connecting after 2, 4, 6 ... s (Celery passes no intervals, kombu's
defaults apply): after a broker restart each worker came back up to that step later than the broker, one
after the other along the canvas. Workers retry every RECONNECT_INTERVAL_MAX seconds at most instead."""
from __future__ import annotations

import functools
import logging

LOG = logging.getLogger(__name__)

# Seconds between a worker's attempts to reach the broker again (first at once, then 1 s, then this).
RECONNECT_INTERVAL_MAX = 2


def apply() -> None:
    _restore_unacked_quietly()
    _ack_on_closed_channel_quietly()
    _reconnect_promptly()


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
        if self.channel.connection is not None:  # a live channel: kombu's own path, errors and all
            return original(self, delivery_tag, *args, **kwargs)
        try:
            return original(self, delivery_tag, *args, **kwargs)
        except errors as exc:
            LOG.warning("message %s finished after its broker connection was lost: it stays unacknowledged and is "
                        "delivered again after the visibility timeout (%r)", delivery_tag, exc)
            forget(self, delivery_tag)  # drop this worker's bookkeeping of the dead channel's message
            return None

    settle._stratus_fixed = True
    return settle


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
    return RedisConnectionError, RedisTimeoutError
