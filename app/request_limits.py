"""Input limits applied before any view runs: body size, JSON nesting depth, content type, hostile path/query text.

Like Nova's paste pipeline (sizelimit before authtoken), these checks answer before authentication, so a huge
or malformed request costs no database work. Views that stream their body (image upload) are exempt from the
size and JSON checks; they enforce their own limit while reading.
"""
from __future__ import annotations

import re

from flask import Flask, request

from core.errors import ApiError
from core.settings import get_settings

# Endpoints whose body is a byte stream, not JSON (other modules may add theirs).
STREAMING_ENDPOINTS: set[str] = {"image.upload_image", "image_import.stage"}
MAX_JSON_DEPTH = 32
MAX_PATH_ARG = 255
# Nova's wsgi accepts these as JSON; no Content-Type (or text/plain) is read as JSON too.
_COMPUTE_JSON_TYPES = {"application/json", "application/vnd.openstack.compute+json"}
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or the reverse: such text cannot be stored as UTF-8.
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                             rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def json_depth(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text, without parsing it (so no recursion limit can be hit)."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _has_body() -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"


def _check_path_and_query() -> None:
    for value in (request.view_args or {}).values():
        if isinstance(value, str) and ("\x00" in value or len(value) > MAX_PATH_ARG):
            raise ApiError(404, "The resource could not be found.")
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise ApiError(400, f"Invalid input for query parameters {name!r}: NUL characters are not allowed.")


def _check_content_type() -> None:
    """Compute API: a body whose declared type is not JSON gets Nova's 415."""
    if not request.path.startswith("/v2"):
        return
    mimetype = request.mimetype
    if mimetype and mimetype != "text/plain" and mimetype not in _COMPUTE_JSON_TYPES:
        raise ApiError(415, "Unsupported Content-Type")


def _check_body() -> None:
    if request.endpoint in STREAMING_ENDPOINTS or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    limit = get_settings().max_request_body
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "Request is too large.")
    if not _has_body():
        return
    _check_content_type()
    # A stream without Content-Length is cut at max_content_length: one byte more than allowed means too large.
    request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise ApiError(413, "Request is too large.")
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ApiError(400, f"Malformed request body: JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
    if _LONE_SURROGATE.search(raw):
        raise ApiError(400, "Malformed request body: a \\u escape is an unpaired UTF-16 surrogate.")


def _before_request() -> None:
    _check_path_and_query()
    _check_body()


def init_app(app: Flask) -> None:
    """Register before the authentication hook so these checks run first."""
    app.before_request(_before_request)
