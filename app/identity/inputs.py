"""What the Identity views check of a request (Keystone's messages): the JSON body and its fields, the list
filters of the query string, the rows a path names (404), the self-or-admin rule, and the list/show/create/
update shapes the catalog and group views share."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request
from marshmallow import Schema, ValidationError
from sqlalchemy import select

from app.context import current
from app.identity.bodies import collection
from app.identity.service import DEFAULT_DOMAIN_ID
from app.policy import check
from app import request_body
from core import db
from core.errors import ApiError

AUTH_FAILED = "The request you have made requires authentication."


def json_body(key: str | None = None) -> dict:
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    if key is None:
        return data
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise ApiError(400, f"Invalid input for field '{key}': a JSON object is required.")
    return inner


def _first_problem(messages: Any, path: str = "") -> tuple[str, str]:
    """The first (field path, message) of marshmallow's nested error messages."""
    if isinstance(messages, dict):
        key, inner = next(iter(sorted(messages.items(), key=lambda item: str(item[0]))))
        name = "" if key == "_schema" else str(key)
        return _first_problem(inner, f"{path}/{name}".strip("/") if name else path)
    if isinstance(messages, list) and messages:
        return _first_problem(messages[0], path)
    return path, str(messages)


def _load(schema: Schema, data: Any, root: str | None) -> dict:
    """Keystone's validation errors: "Invalid input for field '<path>': <problem>"."""
    if root is not None:
        if not isinstance(data.get(root), dict):
            raise ApiError(400, f"Invalid input for field '{root}': a JSON object is required.")
        data = data[root]
    try:
        return schema.load(data)
    except ValidationError as exc:
        field, problem = _first_problem(exc.messages)
        if problem == "Missing data for required field.":
            problem = f"'{field.rsplit('/', 1)[-1]}' is a required property."
        raise ApiError(400, f"Invalid input for field '{field or root}': {problem}") from None


KEYSTONE = request_body.Dialect(
    read=json_body, load=_load,
    extra_key=lambda key: ApiError(400, f"Additional properties are not allowed ('{key}' was unexpected)"),
    not_object=lambda name, value: ApiError(400, f"Invalid input for field '{name}': a JSON object is required."))


def body_schema(schema: type[Schema], root: str | None = None) -> Callable:
    """Load the view's JSON body with ``schema`` (Keystone's 400s) and pass the loaded value as its first
    argument; the OpenAPI document shows the schema."""
    return request_body.body_schema(KEYSTONE, schema, root)


def bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    return raw.strip().lower() not in ("0", "false", "no", "off")


def str_field(data: dict, name: str, *, required: bool = False, max_len: int = 255,
              nullable: bool = False) -> str | None:
    if name not in data:
        if required:
            raise ApiError(400, f"Invalid input for field '{name}': '{name}' is a required property.")
        return None
    value = data[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
        raise ApiError(400, f"Invalid input for field '{name}': expected a string of at most {max_len} "
                            "characters.")
    return value


def bool_field(data: dict, name: str) -> bool | None:
    if name not in data:
        return None
    if not isinstance(data[name], bool):
        raise ApiError(400, f"Invalid input for field '{name}': expected a boolean.")
    return data[name]


def check_domain(domain_id: str | None) -> None:
    if domain_id not in (None, DEFAULT_DOMAIN_ID):
        raise ApiError(404, f"Could not find domain: {domain_id}.")


def self_or_admin(user_id: str, level: str = "admin_api") -> None:
    """The user itself, else ``level`` (``system_reader_api`` for Keystone's reads: admin or system reader)."""
    ctx = current()
    check("authenticated" if ctx.user_id == user_id else level)


def get_or_404(session, model, ident: str, what: str):
    row = session.get(model, ident)
    if row is None:
        raise ApiError(404, f"Could not find {what}: {ident}.")
    return row


def filtered_list(model, render, key: str, filters: tuple[str, ...] = ("name", "domain_id"),
                  order_by: tuple = (), enabled: bool = True) -> Response:
    """A collection of ``model`` rows filtered by the query's equality ``filters`` (and ``enabled``, a boolean),
    Keystone's list filters; projects and users by default."""
    q = select(model).order_by(*(order_by or (model.name,)))
    for name in filters:
        if request.args.get(name) is not None:
            q = q.where(getattr(model, name) == request.args[name])
    flag = bool_arg("enabled") if enabled else None
    if flag is not None:
        q = q.where(model.enabled.is_(flag))
    with db.read_session() as s:
        items = [render(row) for row in s.scalars(q)]
    return collection(key, items, f"/{key}")


def shown(model, ident: str, what: str, render) -> Response:
    with db.read_session() as s:
        return jsonify({what: render(get_or_404(s, model, ident, what))})


def created(what: str, new_row: Callable[[Any], Any], apply: Callable[[Any, dict, Any], None], data: dict,
            render) -> Response:
    """201 with the body of a row made by ``new_row(session)`` and filled by ``apply(session, data, row)``."""
    with db.write_session() as s:
        row = new_row(s)
        apply(s, data, row)
        s.add(row)
        s.flush()
        body = render(row)
    resp = jsonify({what: body})
    resp.status_code = 201
    return resp


def updated(model, ident: str, what: str, apply: Callable[[Any, dict, Any], None], data: dict, render) -> Response:
    """PATCH of one row: Keystone refuses a body naming another id."""
    if data.get("id") not in (None, ident):
        raise ApiError(400, "Cannot change ID.")
    with db.write_session() as s:
        row = get_or_404(s, model, ident, what)
        apply(s, data, row)
        s.flush()
        body = render(row)
    return jsonify({what: body})
