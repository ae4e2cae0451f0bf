"""Errors that mean "try again shortly": a database, broker or hypervisor connection that is down or was lost.

The database's errors are SQLAlchemy's, counted only in a process that has loaded SQLAlchemy (every module that
talks to the DB imports it before its tasks are defined): a compute worker has no database and never loads it
(issue 25), so it does not import it for this list either."""
from __future__ import annotations

import sys

from celery.exceptions import BackendError
from kombu.exceptions import OperationalError as BrokerOperationalError

from drivers.base import DriverUnavailable


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
    except ImportError:
        return ()
    return RedisConnectionError, RedisTimeoutError


def db_errors() -> tuple[type[BaseException], ...]:
    """SQLAlchemy's connection errors where SQLAlchemy is loaded; none elsewhere (no DB, no such error)."""
    exc = sys.modules.get("sqlalchemy.exc")  # loaded with sqlalchemy itself; never imported from here
    return () if exc is None else (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError)


# BackendError: the result backend (Redis) still unreachable after result_backend_always_retry's retries.
BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerOperationalError, BackendError, ConnectionError,
                                                  *_redis_errors())


def transient_errors() -> tuple[type[BaseException], ...]:
    return (*db_errors(), *BROKER_ERRORS, DriverUnavailable)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, transient_errors())
