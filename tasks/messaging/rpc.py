"""The API's synchronous calls to the conductor.

The API is a Celery client, not a task, so waiting for a result is allowed here. If the broker or the conductor
cannot take the request in time, the caller gets 503 with Retry-After: never a 202 for work that was not
durably accepted. API calls go to their own queue, ``conductor.rpc``, which the conductor workers consume next to
``conductor``: a request waits for the tasks being executed, not behind the backlog of canvas steps. Conductor
calls return ``{"ok": ...}`` or ``{"error": {"code": .., "message": ..}}``.
"""
from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from core.errors import ApiError, unavailable
from core.settings import get_settings
from tasks.messaging import plain_json
from tasks.messaging.celery_app import celery
from tasks.messaging.transient import BROKER_ERRORS

LOG = logging.getLogger(__name__)


# The API waits for nothing longer than this while the broker / result backend is unreachable (workers ride out
# longer outages; see celeryconfig): it answers 503 with Retry-After instead.
CLIENT_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}


def configure_client() -> None:
    """Called by the API factory: a short reconnection policy for the result backend (Redis) in this process."""
    options = dict(celery.conf.result_backend_transport_options or {})
    options["retry_policy"] = CLIENT_RETRY_POLICY
    celery.conf.result_backend_transport_options = options
    celery.conf.result_backend_max_retries = CLIENT_RETRY_POLICY["max_retries"]


def call(task_name: str, *args: Any, argsrepr: str | None = None, timeout: float | None = None,
         queue: str = "conductor.rpc") -> Any:
    plain_json.check(args)
    timeout = timeout if timeout is not None else get_settings().rpc_timeout
    options: dict[str, Any] = {"queue": queue}
    if argsrepr is not None:
        options["argsrepr"] = argsrepr
    try:
        result = celery.send_task(task_name, args=args, **options, retry=True,
                                  retry_policy=CLIENT_RETRY_POLICY)
    except (*BROKER_ERRORS, OSError, RuntimeError) as exc:
        _reraise_unless_result_store(exc)
        LOG.warning("broker unavailable for %s: %s", task_name, exc)
        raise unavailable("The compute service is temporarily unavailable (message broker unreachable).")
    try:
        reply = result.get(timeout=timeout, interval=_wait_interval(celery.backend), propagate=True)
    except CeleryTimeout:
        LOG.warning("conductor did not answer %s within %.0f s", task_name, timeout)
        raise unavailable("The compute service is temporarily unavailable (conductor did not answer in time).")
    except (*BROKER_ERRORS, OSError, RuntimeError) as exc:
        _reraise_unless_result_store(exc)
        LOG.warning("result backend unavailable for %s: %s", task_name, exc)
        raise unavailable("The compute service is temporarily unavailable (result backend unreachable).")
    finally:
        _forget(result)
    if isinstance(reply, dict) and "error" in reply:
        err = reply["error"]
        if int(err["code"]) == 503:
            raise unavailable(err["message"])
        raise ApiError(int(err["code"]), err["message"], error_code=err.get("error_code"))
    return reply["ok"]


def _wait_interval(backend: Any) -> float:
    """How long a waiting call sleeps between looks at its reply. Redis replies come by pub/sub, and reading one
    wakes every waiting thread (Celery's ResultConsumer notifies them), so a short interval only wakes them to
    find nothing: 16 waiting threads at 5 ms cost 8 % of the API's CPU in a boot storm. Other backends keep 5 ms
    (the file backend is polled: a call must not wait most of Celery's default half second)."""
    from celery.backends.redis import RedisBackend
    return 0.1 if isinstance(backend, RedisBackend) else 0.005


def cast(task_name: str, *args: Any, queue: str) -> None:
    """Send a task nobody waits for (e.g. to a compute host's queue); 503 when the broker is unreachable."""
    plain_json.check(args)
    try:
        celery.send_task(task_name, args=args, queue=queue, retry=True, retry_policy=CLIENT_RETRY_POLICY)
    except (*BROKER_ERRORS, OSError, RuntimeError) as exc:
        LOG.warning("broker unavailable for %s: %s", task_name, exc)
        raise unavailable("The compute service is temporarily unavailable (message broker unreachable).")


def _reraise_unless_result_store(exc: BaseException) -> None:
    """Celery's Redis result consumer gives up reconnecting with a bare RuntimeError ("... reconnect to the
    Celery result store ..."); it starts afresh on the next call, so that one is an outage (503), not a bug."""
    if isinstance(exc, RuntimeError) and "result store" not in str(exc):
        raise exc


def _forget(result: Any) -> None:
    try:
        result.forget()
    except Exception:  # some backends (rpc://) keep nothing to forget; an unreachable one forgets later
        pass
