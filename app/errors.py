"""OpenStack-shaped errors. Views raise ApiError; the handlers answer as the reference service of the API the
request went to (app/error_formats.py): Keystone's body under /identity, Glance's (webob's, by content
negotiation) under /image, Neutron's under /networking, Nova's fault elsewhere, and keystonemiddleware's 401 wherever the token is refused."""
from __future__ import annotations

import json
import logging

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError as DBOperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.allow import allowed_methods
from app.error_formats import keystone_body, neutron_body, nova_body, title, webob_error
from core.errors import ApiError
from core.settings import get_settings

LOG = logging.getLogger(__name__)


def _placement_body(code: int, message: str, error_code: str | None) -> dict:
    error = {"status": code, "title": title(code), "detail": message,
             "code": error_code or "placement.undefined_code", "request_id": g.get("request_id")}
    if code == 406:  # clients (osc-placement) fall back to the max_version it names
        from app.placement.microversion import MAX_VERSION, MIN_VERSION
        error.update(max_version="%d.%d" % MAX_VERSION, min_version="%d.%d" % MIN_VERSION)
    return {"errors": [error]}


def _render(code: int, message: str, error_code: str | None = None) -> Response:
    path = request.path
    if code == 401:
        # Keystone's own 401, and keystonemiddleware's (auth_token) in front of Nova, Glance and Placement: the
        # same body, and the header that tells the client where to authenticate.
        resp = Response(json.dumps(keystone_body(code, message)), content_type="application/json")
        resp.headers["WWW-Authenticate"] = f'Keystone uri="{get_settings().public_url.rstrip("/")}/identity"'
        return resp
    if path == "/placement" or path.startswith("/placement/"):
        return jsonify(_placement_body(code, message, error_code))
    if path == "/networking" or path.startswith("/networking/"):
        return jsonify(neutron_body(code, message, error_code))
    if path.startswith("/identity"):
        return jsonify(keystone_body(code, message))
    if path.startswith("/image"):
        body, content_type = webob_error(code, message, request.headers.get("Accept"),
                                          request.headers.get("Content-Type", ""))
        return Response(body, content_type=content_type)
    return jsonify(nova_body(code, message))


def error_response(code: int, message: str, headers: dict[str, str] | None = None,
                   error_code: str | None = None) -> Response:
    resp = _render(code, message, error_code)
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
                   413: "Request is too large."}.get(code, exc.description or title(code))
        headers = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 lists the allowed methods
            headers["Allow"] = ", ".join(sorted(allowed_methods() or exc.valid_methods))
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
