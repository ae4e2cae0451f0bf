"""kombu's JSON, encoded and decoded by orjson.

Every broker hop runs kombu's JSON five times on Redis: the task body and the transport's envelope on publish, the
envelope again in the unacked set, and both decodes on delivery (the decoder calls a Python ``object_hook`` for
every object). ``install()`` puts these functions in place of kombu's: the same wire format, the same special types
(``{"__type__": "datetime", "__value__": ...}`` for datetimes, dates, times, Decimals and bytes, ``__json__``), so
processes with and without it read each other's messages.

What orjson cannot do the same way goes to kombu's own functions: a value orjson refuses (an integer beyond 64 bits,
an unknown type: kombu's error), text it refuses (``NaN``), any text holding a ``"__type__"`` key, and any text with
a run of 19 or more digits (orjson reads an integer beyond 64 bits as a float; the run may also be in a string or
a base64 body, which only costs the slower decoder). Two
differences remain: a ``uuid.UUID`` is sent as its string (kombu sends a ``uuid`` envelope; Stratus passes IDs as
strings), and a float NaN or infinity is sent as ``null`` (kombu sends ``NaN``, which is not JSON).
"""
from __future__ import annotations

from typing import Any

import orjson
from kombu.utils import json as kombu_json

from core.json_digits import has_long_digit_run
from tasks.messaging import fs_transport

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
_default = kombu_json.JSONEncoder().default
_kombu_dumps, _kombu_loads = kombu_json.dumps, kombu_json.loads
_TYPED = {str: '"__type__"', bytes: b'"__type__"'}


def dumps(obj: Any, **kwargs: Any) -> str:
    """kombu's ``dumps`` (a str), by orjson; keyword arguments (a custom encoder, indent) go to kombu's."""
    if kwargs:
        return _kombu_dumps(obj, **kwargs)
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: what kombu makes of it (its encoding or its error)
        return _kombu_dumps(obj)


def loads(s: str | bytes | bytearray | memoryview, **kwargs: Any) -> Any:
    """kombu's ``loads``, by orjson unless the text holds a typed value (or is not strict JSON)."""
    if kwargs:
        return _kombu_loads(s, **kwargs)
    text = s if isinstance(s, str) else bytes(s)
    # What kombu's decoder must read: a typed value, or digits that may be an integer beyond 64 bits.
    if _TYPED[str if isinstance(text, str) else bytes] not in text and not has_long_digit_run(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return _kombu_loads(s)


def install() -> None:
    """Use these for the ``json`` serializer and in the transports Stratus runs (Redis, the filesystem one)."""
    from kombu import serialization
    from kombu.transport import redis as kombu_redis

    serialization.register("json", dumps, loads, content_type="application/json", content_encoding="utf-8")
    for module in (kombu_redis, fs_transport):
        module.dumps, module.loads = dumps, loads
