"""Placement API microversions (1.0 to 1.39): negotiation from ``OpenStack-API-Version: placement 1.x``, echo,
and comparisons. A request without the header gets 1.0, as Placement answers; outside the range, 406."""
from __future__ import annotations

import re

from flask import Flask, g, request

from core.errors import ApiError

MIN_VERSION = (1, 0)
MAX_VERSION = (1, 39)
PREFIX = "/placement"
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def is_placement_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _requested() -> str | None:
    for part in request.headers.get("OpenStack-API-Version", "").split(","):
        words = part.strip().split()
        if len(words) == 2 and words[0].lower() == "placement":
            return words[1]
    return None


def negotiate() -> tuple[int, int]:
    text = _requested()
    if text is None:
        return MIN_VERSION
    text = text.strip().lower()
    if text == "latest":
        return MAX_VERSION
    m = _VERSION_RE.match(text)
    if not m:
        raise ApiError(400, f"invalid version string: {text}", error_code="placement.undefined_code")
    v = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= v <= MAX_VERSION:
        raise ApiError(406, f"Unacceptable version header: {text}", error_code="placement.undefined_code")
    return v


def current() -> tuple[int, int]:
    return g.get("placement_version", MIN_VERSION)


def at_least(text: str) -> bool:
    """True when the negotiated version is ``text`` ("1.14") or later."""
    major, minor = text.split(".")
    return current() >= (int(major), int(minor))


def require(text: str) -> None:
    """404 below ``text``, as Placement answers a route that its version does not have."""
    if not at_least(text):
        raise ApiError(404, "The resource could not be found.", error_code="placement.undefined_code")


def init_app(app: Flask) -> None:
    @app.before_request
    def _negotiate() -> None:
        if is_placement_path(request.path):
            g.placement_version = MIN_VERSION  # an error from negotiate() is still echoed at 1.0
            g.placement_version = negotiate()

    @app.after_request
    def _echo(resp):
        if is_placement_path(request.path):
            resp.headers["OpenStack-API-Version"] = f"placement {_fmt(current())}"
            resp.headers.add("Vary", "OpenStack-API-Version")
        return resp
