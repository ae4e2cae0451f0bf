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
