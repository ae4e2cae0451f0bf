"""OpenStack-shaped errors. Views raise ApiError; handlers render Nova's, Keystone's or Glance's body."""
from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError as DBOperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from core.errors import ApiError

LOG = logging.getLogger(__name__)

# Nova's fault names (nova/api/openstack/wsgi.py); anything else is "computeFault".
_NOVA_FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
                     405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
                     429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable"}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           406: "Not Acceptable", 409: "Conflict", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


def _body(code: int, message: str, error_code: str | None = None) -> dict:
    path = request.path
    if path == "/placement" or path.startswith("/placement/"):
        error = {"status": code, "title": _TITLES.get(code, "Error"), "detail": message,
                 "code": error_code or "placement.undefined_code", "request_id": g.get("request_id")}
        if code == 406:  # clients (osc-placement) fall back to the max_version it names
            from app.placement.microversion import MAX_VERSION, MIN_VERSION
            error.update(max_version="%d.%d" % MAX_VERSION, min_version="%d.%d" % MIN_VERSION)
        return {"errors": [error]}
    if path.startswith("/identity"):
        return {"error": {"code": code, "message": message, "title": _TITLES.get(code, "Error")}}
    if path.startswith("/image"):
        return {"code": code, "title": _TITLES.get(code, "Error"), "message": message}
    return {_NOVA_FAULT_NAMES.get(code, "computeFault"): {"code": code, "message": message}}


def error_response(code: int, message: str, headers: dict[str, str] | None = None,
                   error_code: str | None = None) -> Response:
    resp = jsonify(_body(code, message, error_code))
    resp.status_code = code
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.code, exc.message, exc.headers, exc.error_code)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        message = {404: "The resource could not be found.", 405: "The method is not allowed for this resource.",
                   413: "Request is too large."}.get(code, exc.description or _TITLES.get(code, "Error"))
        headers = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 lists the allowed methods
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return error_response(code, message, headers)

    @app.errorhandler(DBAPIError)
    @app.errorhandler(DisconnectionError)
    def _database_down(exc: Exception) -> Response:
        # The database is unreachable, restarted (the pool reconnects on the next use) or locked: the client may
        # retry; this is not a bug of the request.
        if isinstance(exc, DBAPIError) and not (exc.connection_invalidated
                                                or isinstance(exc, (DBOperationalError, InterfaceError))):
            return _unexpected(exc)
        LOG.warning("database unavailable on %s %s: %s", request.method, request.path, str(exc).splitlines()[0])
        return error_response(503, "The database is temporarily unavailable.", {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        LOG.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "Unexpected API Error. Please report this at the Stratus issue tracker.")
