"""Flask's JSON through orjson: a 1,000-server ``GET /servers/detail`` spent ~22 ms of its ~90 ms CPU in the
standard library's encoder (bench/README.md); orjson takes a few. Key order is kept (Nova's bodies are not
sorted). Anything orjson refuses (a non-str key, an int beyond 64 bits, an unknown type) goes through Flask's
default provider, so the output never changes, only its cost. Request bodies keep the standard parser: orjson
reads an integer beyond 64 bits as a float, which would change what validation sees."""
from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # datetimes take Flask's format (http_date), as before


class OrjsonProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # an explicit option (indent, sort_keys, ...): the standard encoder honours it
            return super().dumps(obj, **kwargs)
        try:
            return orjson.dumps(obj, option=_OPTIONS).decode()
        except TypeError:
            return super().dumps(obj)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, option=_OPTIONS)
        except TypeError:
            return super().response(*args, **kwargs)
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)
