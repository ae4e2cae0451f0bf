"""A request's JSON body declared once with ``@body_schema`` and a marshmallow schema: the decorator loads and
validates the body with that schema and hands the loaded value to the view as its first argument, and the OpenAPI
document (app/openapi.py) is generated from the same declaration, so what is documented is what is validated.

Each API words its 400s its own way (Nova's "Invalid input for field/attribute", Keystone's "Invalid input for
field"): a ``Dialect`` reads the body and turns the schema's errors into that API's error; app/compute/request_body.py
and app/identity/inputs.py define theirs."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import Schema

from app.microversion import APIVersion, current as api_version

_DECLARED = "declared_body"


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How one API reads a body (``read``: the JSON object, or its error) and loads it with a schema (``load``:
    schema instance, body, root key -> loaded value, or its error); ``extra_key`` and ``not_object`` word the
    errors of a body with ``siblings``."""
    read: Callable[[], dict]
    load: Callable[[Schema, Any, str | None], dict]
    extra_key: Callable[[str], Exception]
    not_object: Callable[[str, Any], Exception]
    # a body with a root key has no other top-level keys (Nova's schemas), unless the view names them (siblings)
    closed_root: bool = False


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@dataclasses.dataclass
class BodySchema:
    """A view's body: ``schema`` (the part under ``root`` when there is one), replaced from a microversion on by
    the schemas in ``versions`` (microversion -> schema); ``siblings`` are the other top-level keys the body may
    have (JSON objects the view reads itself), and with them any further top-level key is refused. Without
    ``siblings`` other top-level keys are ignored."""
    schema: type[Schema]
    root: str | None = None
    versions: Mapping[str, type[Schema]] = dataclasses.field(default_factory=dict)
    siblings: tuple[str, ...] | None = None
    dialect: Dialect | None = None
    since: str | None = None
    # (first microversion, schema instance), oldest first: loading keeps no state in an instance, so one of each
    # serves every request.
    _loaders: list[tuple[str, Schema]] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        newer = sorted(self.versions.items(), key=lambda item: _version_key(item[0]))
        self._loaders = [(since, schema()) for since, schema in [("2.1", self.schema), *newer]]

    def schemas(self) -> list[type[Schema]]:
        return [self.schema, *self.versions.values()]

    def schema_for(self, version: APIVersion | None) -> type[Schema]:
        """The schema class that loads a body at ``version`` (the oldest without one)."""
        return type(self._instance_for(version))

    def _instance_for(self, version: APIVersion | None) -> Schema:
        if version is None:
            return self._loaders[0][1]
        return [schema for since, schema in self._loaders if version.matches(since)][-1]

    def load(self, body: dict, version: APIVersion | None) -> dict:
        assert self.dialect is not None
        if self.siblings is None and self.root is not None and self.root not in body:  # as Nova reports it
            return self.dialect.load(self._instance_for(version), body, self.root)
        if self.siblings is not None or (self.dialect.closed_root and self.root is not None):
            extra = set(body) - {self.root, *(self.siblings or ())}
            if extra:
                raise self.dialect.extra_key(sorted(extra)[0])
            for name in self.siblings or ():
                if name in body and not isinstance(body[name], dict):
                    raise self.dialect.not_object(name, body[name])
        return self.dialect.load(self._instance_for(version), body, self.root)


def body_schema(dialect: Dialect, schema: type[Schema], root: str | None = None, *,
                versions: Mapping[str, type[Schema]] | None = None,
                siblings: tuple[str, ...] | None = None, since: str | None = None) -> Callable:
    """Load the view's JSON body with ``schema`` (see BodySchema) and pass the loaded value as its first argument.
    ``since``: the Compute microversion the route appears at; before it the view gets None (and answers 404)."""
    declared = BodySchema(schema, root, dict(versions or {}), siblings, dialect, since)

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if since is not None and not api_version().matches(since):
                return view(None, *args, **kwargs)
            version = api_version() if declared.versions else None
            return view(declared.load(dialect.read(), version), *args, **kwargs)
        setattr(inner, _DECLARED, declared)
        return inner
    return wrap


def declared_body(view: Callable) -> BodySchema | None:
    """The body a view declared with ``@body_schema`` (kept on the wrappers around it), if any."""
    return getattr(view, _DECLARED, None)

