"""Compute API microversions: negotiation, echo headers and comparisons."""
from __future__ import annotations

import functools
import re

from flask import Flask, g, request

from core.errors import ApiError

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 96)
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


@functools.cache
def _parse(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


@functools.total_ordering
class APIVersion:
    def __init__(self, major: int, minor: int):
        self.t = (major, minor)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, APIVersion) and self.t == other.t

    def __lt__(self, other: "APIVersion") -> bool:
        return self.t < other.t

    def matches(self, text: str) -> bool:
        """True when this version is at least ``text`` (e.g. "2.47")."""
        return self.t >= _parse(text)

    def __str__(self) -> str:
        return fmt(self.t)


def _requested() -> str | None:
    value = request.headers.get("OpenStack-API-Version")
    if value:
        # "compute 2.37" (possibly a comma-separated list for several services)
        for part in value.split(","):
            words = part.strip().split()
            if len(words) == 2 and words[0].lower() == "compute":
                return words[1]
    return request.headers.get("X-OpenStack-Nova-API-Version")


def negotiate() -> APIVersion:
    if request.path.startswith("/v2/") or request.path == "/v2":
        # The legacy v2 endpoint is v2.1 without microversions.
        return APIVersion(*MIN_VERSION)
    text = _requested()
    if text is None:
        return APIVersion(*MIN_VERSION)
    text = text.strip().lower()
    if text == "latest":
        return APIVersion(*MAX_VERSION)
    m = _VERSION_RE.match(text)
    if not m:
        raise ApiError(400, f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum.")
    v = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= v <= MAX_VERSION:
        raise ApiError(406, f"Version {text} is not supported by the API. Minimum is {fmt(MIN_VERSION)} and "
                            f"maximum is {fmt(MAX_VERSION)}.")
    return APIVersion(*v)


def current() -> APIVersion:
    return g.api_version


def is_compute_path(path: str) -> bool:
    return path.startswith(("/v2.1", "/v2/")) or path == "/v2"


def init_app(app: Flask) -> None:
    @app.before_request
    def _negotiate() -> None:
        if is_compute_path(request.path):
            g.api_version = negotiate()

    @app.after_request
    def _echo(resp):
        if is_compute_path(request.path) and "api_version" in g and not request.path.startswith("/v2/"):
            v = str(g.api_version)
            resp.headers["OpenStack-API-Version"] = f"compute {v}"
            resp.headers["X-OpenStack-Nova-API-Version"] = v
            resp.headers.add("Vary", "OpenStack-API-Version")
            resp.headers.add("Vary", "X-OpenStack-Nova-API-Version")
        return resp
