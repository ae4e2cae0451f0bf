"""The JSON body of a Compute API request, and ``@body_schema`` with Nova's wording of its errors
(app/request_body.py): a view names its body's marshmallow schema once; the decorator loads and validates the body
with it and hands the loaded value to the view as its first argument, and the OpenAPI document shows the same
declaration."""
from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import request
from marshmallow import Schema

from app import request_body
from app.compute.schemas import load
from app.request_body import BodySchema, declared_body  # noqa: F401  (the Compute views' names for them)
from core.errors import bad_request


def json_body() -> dict:
    """The request's JSON object; 400 for anything else. Nova reads a body without Content-Type (or text/plain) as
    JSON; app.request_limits answers other types with 415."""
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise bad_request("Malformed request body")
    return data


NOVA = request_body.Dialect(
    read=json_body, load=load,
    extra_key=lambda key: bad_request(f"Additional properties are not allowed ('{key}' was unexpected)"),
    not_object=lambda name, value: bad_request(f"Invalid input for field/attribute {name}. Value: {value!r}. "
                                               f"{value!r} is not of type 'object'"),
    closed_root=True)


def body_schema(schema: type[Schema], root: str | None = None, *, versions: Mapping[str, type[Schema]] | None = None,
                siblings: tuple[str, ...] | None = None, since: str | None = None) -> Callable:
    """Load the view's JSON body with ``schema`` (Nova's 400s) and pass the loaded value as its first argument."""
    return request_body.body_schema(NOVA, schema, root, versions=versions, siblings=siblings, since=since)
