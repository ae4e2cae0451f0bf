"""Marshmallow fields the request schemas of every API share (Flask-free)."""
from __future__ import annotations

from typing import Any

from marshmallow import fields


class WholeNumber(fields.Integer):
    """JSON Schema's "integer", as OpenStack's validators read it: 3 and 3.0, not "3" nor true (loaded as int)."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """JSON Schema's "boolean" (Keystone's and Glance's): true or false, not 0 or 1 (marshmallow's truthy/falsy sets
    would take them: 0 == False)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


NOVA_TRUE = ("True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes")
NOVA_FALSE = ("False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no")


class NovaBoolean(fields.Boolean):
    """Nova's parameter_types.boolean: true, false or one of its strings (not 0 or 1); ``extra``: further string
    values kept as they are (live migration's "auto")."""

    def __init__(self, extra: tuple[str, ...] = (), **kw: Any):
        super().__init__(**kw)
        self.extra = extra
        self.json_schema = {"type": ["boolean", "string"], "enum": [True, *NOVA_TRUE, False, *NOVA_FALSE, *extra]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool | str:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in NOVA_TRUE + NOVA_FALSE:
            return value in NOVA_TRUE
        if isinstance(value, str) and value in self.extra:
            return value
        raise self.make_error("invalid", input=value)
