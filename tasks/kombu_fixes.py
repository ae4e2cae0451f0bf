"""A fix for kombu's Redis transport, applied when the Celery app is imported.

When the broker connection drops, Celery closes the old connection; closing a Redis channel first tries to
put the messages this worker holds back on their queues, through a connection that is already gone. kombu
then raises (AttributeError on the released connection, or ConnectionError), and Celery treats that as an
"Unrecoverable error" and exits the worker: a Redis restart could kill every worker. The messages are safe
without that eager restore: they stay in Redis's unacked set and the visibility-timeout sweep delivers them
again (broker_visibility_timeout)."""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def apply() -> None:
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


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
    return RedisConnectionError, RedisTimeoutError
