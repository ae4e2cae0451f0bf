"""Errors of Stratus's domain, each with the HTTP status an OpenStack API answers for it (as Nova's exceptions
carry a ``code``). The conductor replies with them over RPC; the API's handlers (app/errors.py) render them."""
from __future__ import annotations


class ConductorError(Exception):
    """A domain error a conductor call answers with (``{"error": {"code": .., "message": ..}}``, shown to the
    client with ``code``): raised by the conductor and its write helpers (core/writes)."""

    def __init__(self, code: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        # Placement's machine-readable code ("placement.concurrent_update"); Neutron's error type ("PortNotFound")
        self.error_code = error_code


class ApiError(Exception):
    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None,
                 error_code: str | None = None):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}
        # Placement's machine-readable code ("placement.concurrent_update"); Neutron's error type ("PortNotFound")
        self.error_code = error_code


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def forbidden(message: str = "Policy doesn't allow this action to be performed.") -> ApiError:
    return ApiError(403, message)


def unavailable(message: str, retry_after: int = 5) -> ApiError:
    return ApiError(503, message, {"Retry-After": str(retry_after)})
