"""What the API sends to Celery is plain JSON: objects with string keys, arrays, strings, finite numbers, booleans
and null. kombu's encoder refuses other values (an ``ipaddress`` object: ``EncodeError``, a 500 after the request
was validated) or turns them into typed envelopes a worker reads back as something else (datetimes, Decimals,
UUIDs, tuples), so a value a view forgot to convert is a programming error caught here, before any message
leaves, with the path to it; tests/unit/inprocess.py runs the same check on every conductor call of the tests."""
from __future__ import annotations

import math
from typing import Any

_SCALARS = (str, int, bool, type(None))


class NotPlainJson(TypeError):
    """A task argument that is not plain JSON (a bug of the caller, not of the request)."""


def check(value: Any, where: str = "args") -> None:
    """Raise NotPlainJson naming the first value under ``value`` that is not plain JSON (exact types: a subclass,
    such as an IntEnum, would come back from the broker as its base type)."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise NotPlainJson(f"{where} is {value!r}, which JSON cannot carry")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise NotPlainJson(f"{where} has a key of type {type(key).__name__}: {key!r}")
            check(item, f"{where}[{key!r}]")
        return
    if kind is list or (kind is tuple and where == "args"):  # the argument tuple itself is Celery's
        for index, item in enumerate(value):
            check(item, f"{where}[{index}]")
        return
    raise NotPlainJson(f"{where} is a {kind.__module__}.{kind.__qualname__} ({value!r}), not plain JSON")
