"""The JSON body of a Compute API request, and ``@body_schema``: a view names its body's marshmallow schema once;
the decorator loads and validates the body with it (errors are Nova's 400s) and hands the loaded value to the
view as its first argument, and the OpenAPI document (app/openapi.py) shows the same declaration, so what is
documented is what is validated."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from flask import request
from marshmallow import Schema

from app.compute.schemas import load
from app.microversion import APIVersion, current as api_version
from core.errors import bad_request

_DECLARED = "declared_body"


def json_body() -> dict:
    """The request's JSON object; 400 for anything else. Nova reads a body without Content-Type (or text/plain) as
    JSON; app.request_limits answers other types with 415."""
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise bad_request("Malformed request body")
    return data


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@dataclasses.dataclass
class BodySchema:
    """A view's body: ``schema`` (the part under ``root`` when there is one), replaced from a microversion on by
    the schemas in ``versions`` (microversion -> schema); ``siblings`` are the other top-level keys the body may
    have (JSON objects the view reads itself), and with them any further top-level key is refused."""
    schema: type[Schema]
    root: str | None = None
    versions: Mapping[str, type[Schema]] = dataclasses.field(default_factory=dict)
    siblings: tuple[str, ...] | None = None
    # (first microversion, schema instance), oldest first: loading keeps no state in an instance, so one of each
    # serves every request.
    _loaders: list[tuple[str, Schema]] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        newer = sorted(self.versions.items(), key=lambda item: _version_key(item[0]))
        self._loaders = [(since, schema()) for since, schema in [("2.1", self.schema), *newer]]

    def schemas(self) -> list[type[Schema]]:
        return [self.schema, *self.versions.values()]

    def _instance_for(self, version: APIVersion | None) -> Schema:
        if version is None:
            return self._loaders[0][1]
        return [schema for since, schema in self._loaders if version.matches(since)][-1]

    def load(self, body: dict, version: APIVersion | None) -> dict:
        if self.siblings is not None:
            extra = set(body) - {self.root, *self.siblings}
            if extra:
                raise bad_request(f"Additional properties are not allowed ('{sorted(extra)[0]}' was unexpected)")
            for name in self.siblings:
                if name in body and not isinstance(body[name], dict):
                    raise bad_request(f"Invalid input for field/attribute {name}. Value: {body[name]!r}. "
                                      f"{body[name]!r} is not of type 'object'")
        return load(self._instance_for(version), body, root=self.root)


def body_schema(schema: type[Schema], root: str | None = None, *, versions: Mapping[str, type[Schema]] | None = None,
                siblings: tuple[str, ...] | None = None) -> Callable:
    """Load the view's JSON body with ``schema`` (see BodySchema) and pass the loaded value as its first argument."""
    declared = BodySchema(schema, root, dict(versions or {}), siblings)

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            version = api_version() if declared.versions else None
            return view(declared.load(json_body(), version), *args, **kwargs)
        setattr(inner, _DECLARED, declared)
        return inner
    return wrap


def declared_body(view: Callable) -> BodySchema | None:
    """The body a view declared with ``@body_schema`` (kept on the wrappers around it), if any."""
    return getattr(view, _DECLARED, None)
