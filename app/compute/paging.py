"""Nova's limit/marker paging for lists that are small enough to page in memory (hypervisors, usage): the
``limit`` (non-negative, capped at MAX_LIMIT, 0 = the cap), the ``marker`` (id of the last item seen; 400 if it is
not in the list) and the ``<collection>_links`` next link when a page is full."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlencode

from flask import request

from app.compute.views import base_url, compute_prefix
from core.errors import bad_request

MAX_LIMIT = 1000
T = TypeVar("T")


def limit_and_marker() -> tuple[int, str | None]:
    raw = request.args.get("limit")
    limit = MAX_LIMIT
    if raw is not None:
        if not raw.strip().isdigit():
            raise bad_request(f"Invalid input for query parameters limit. Value: {raw}. '{raw}' does not match "
                              f"'^[0-9]*$'")
        limit = min(int(raw), MAX_LIMIT) or MAX_LIMIT
    return limit, request.args.get("marker")


def page(items: Sequence[T], key: Callable[[T], object], limit: int, marker: str | None) -> list[T]:
    """The items after ``marker`` (compared as strings with ``key(item)``), at most ``limit`` of them."""
    start = 0
    if marker is not None:
        ids = [str(key(item)) for item in items]
        if marker not in ids:
            raise bad_request(f"marker [{marker}] not found")
        start = ids.index(marker) + 1
    return list(items[start:start + limit])


def next_links(path: str, last_id: object | None, count: int, limit: int) -> list[dict]:
    """A ``next`` link (the request's query with the new marker) when the page is full, else none."""
    if last_id is None or count < limit:
        return []
    params = [(k, v) for k, v in request.args.items(multi=True) if k != "marker"] + [("marker", str(last_id))]
    return [{"rel": "next", "href": f"{base_url()}{compute_prefix()}/{path}?{urlencode(params)}"}]
