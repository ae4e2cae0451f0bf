"""One Redis connection for every command of a compute worker (issue 25: at most 3 broker connections per worker).

kombu's Redis channels each keep a pool of their own for commands (publishes, acknowledgements, the unacked index,
binding tables), besides their blocking connections (a consumer's BRPOP, remote control's PSUBSCRIBE), and Celery's
Redis result backend keeps another per thread. A compute worker has four channels (task consumer, remote control,
producer, event dispatcher): 6 connections idle, 9 once its pool threads stored API replies (measured on one worker
with 5 fake hosts). Here every such pool of the process for the same server is one pool of one connection: the
worker holds BRPOP, PSUBSCRIBE and this one, and keeps remote control (liveness, Flower's enable_events) and events.

Threads wait for the connection in turn (a command takes a fraction of a millisecond). A thread that already holds
it gets it again instead of waiting for itself: kombu's restore transaction reads a binding table inside its WATCH.
No blocking command and no subscription runs on these pools: kombu sends those on its asynchronous pool, and the
result backend subscribes only in a process that waits for results, never in a worker (task_join_will_block)."""
from __future__ import annotations

import threading
from typing import Any

import redis
from celery.backends.redis import RedisBackend as _RedisBackend
from kombu.transport import redis as kombu_redis

# Seconds a command waits for the connection before failing as a connection error would (a holder is slow only when
# the server is: redis socket_timeout 10 s, one retry).
WAIT_MAX = 30.0
TRANSPORT = "tasks.messaging.shared_redis:Transport"
BACKEND = "tasks.messaging.shared_redis:RedisBackend"

_pools: dict[tuple, "SharedPool"] = {}
_pools_lock = threading.Lock()


class SharedPool(redis.BlockingConnectionPool):
    """One connection, taken in turn by threads and again by the thread that holds it."""

    def __init__(self, **params: Any):
        super().__init__(max_connections=1, timeout=WAIT_MAX, **params)
        self._held = threading.local()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        held = getattr(self._held, "connection", None)
        if held is not None:
            self._held.depth += 1
            return held
        connection = super().get_connection()
        self._held.connection, self._held.depth = connection, 1
        return connection

    def release(self, connection: Any) -> None:
        if getattr(self._held, "connection", None) is connection:
            self._held.depth -= 1
            if self._held.depth:
                return
            self._held.connection = None
        super().release(connection)

    def disconnect(self, inuse_connections: bool = True) -> None:
        # A channel that closes (a reconnection, a dispatcher replaced) must not cut a command another thread has in
        # flight; a connection that died is replaced when next taken (get_connection checks it).
        super().disconnect(inuse_connections=False)


def shared_pool(**params: Any) -> SharedPool:
    """The process's pool for the server and database these redis-py connection parameters name."""
    key = tuple(params.get(k) for k in ("host", "port", "path", "db", "username", "password")) + (
        params.get("connection_class", redis.Connection),)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = SharedPool(**{k: v for k, v in params.items() if k != "max_connections"})
        return pool


class Channel(kombu_redis.Channel):
    def _get_pool(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # BRPOP and PSUBSCRIBE: a connection each, held by this channel
            return super()._get_pool(asynchronous=True)
        params = self._connparams(asynchronous=False)
        self.keyprefix_fanout = self.keyprefix_fanout.format(db=params["db"])
        return shared_pool(**params)


class Transport(kombu_redis.Transport):
    Channel = Channel


class RedisBackend(_RedisBackend):
    def _get_pool(self, **params: Any) -> Any:
        return shared_pool(**params)


def install(app: Any) -> bool:
    """Make this process's broker and Redis result backend use the shared pools; call before the worker starts.
    Returns whether the broker is Redis."""
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return False
    app.conf.broker_transport = TRANSPORT
    backend = app.conf.result_backend or ""
    if backend.startswith(("redis://", "rediss://")):
        app.conf.result_backend = f"{BACKEND}+{backend}"
    return True
