"""Errors that mean "try again shortly": a database, broker or hypervisor connection that is down or was lost."""
from __future__ import annotations

from celery.exceptions import BackendError
from kombu.exceptions import OperationalError as BrokerOperationalError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError as DBOperationalError

from drivers.base import DriverUnavailable


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
    except ImportError:
        return ()
    return RedisConnectionError, RedisTimeoutError


DB_ERRORS: tuple[type[BaseException], ...] = (DBOperationalError, InterfaceError, DisconnectionError)
# BackendError: the result backend (Redis) still unreachable after result_backend_always_retry's retries.
BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerOperationalError, BackendError, ConnectionError,
                                                  *_redis_errors())
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, *BROKER_ERRORS, DriverUnavailable)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)
