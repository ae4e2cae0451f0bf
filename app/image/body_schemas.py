"""The Image API's create body (Glance's image schema, as far as Stratus serves it) as a marshmallow schema: the
view loads the body with it (``body_schema``, Glance's 400s) and the OpenAPI document shows it. Properties beyond
the base attributes are the image's own (strings; numbers and booleans are stored as strings)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app import request_body
from app.fields import StrictBoolean, WholeNumber
from core.errors import ApiError

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
_MAX_INT = 2147483647


def _bool(**kw: Any) -> fields.Boolean:
    return StrictBoolean(**kw)


class ImageCreateSchema(Schema):
    id = fields.String(validate=validate.Regexp(  # Glance's pattern: a hyphenated UUID, kept as it came
        r"^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"),
        metadata={"format": "uuid"})
    name = fields.String(allow_none=True, validate=validate.Length(max=255))
    disk_format = fields.String(allow_none=True, validate=validate.OneOf(DISK_FORMATS))
    container_format = fields.String(allow_none=True, validate=validate.OneOf(CONTAINER_FORMATS))
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES))
    protected = _bool()
    os_hidden = _bool()
    min_disk = WholeNumber(validate=validate.Range(min=0, max=_MAX_INT))
    min_ram = WholeNumber(validate=validate.Range(min=0, max=_MAX_INT))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=255)))
    owner = fields.String(allow_none=True, validate=validate.Length(max=64))

    class Meta:
        unknown = INCLUDE
        # the image's own properties: names of 1 to 255 characters outside Glance's reserved os_glance prefix
        json_schema = {"propertyNames": {"minLength": 1, "maxLength": 255, "not": {"pattern": "^os_glance"}},
                       "additionalProperties": {"type": ["string", "number", "boolean"]}}

    @validates_schema(pass_original=True)
    def _own_properties(self, data: dict, original: dict, **kw: Any) -> None:
        for key, value in original.items():
            if key in self.fields:
                continue
            if not key or len(key) > 255:
                raise ValidationError("Property names must be 1 to 255 characters long.")
            if not isinstance(value, (str, int, float, bool)):
                raise ValidationError(f"Invalid value for property '{key}': additional properties must be strings.")


def _read() -> dict:
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _load(schema: Schema, data: Any, root: str | None) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        field, problems = next(iter(sorted(exc.messages.items())))
        problem = problems[0] if isinstance(problems, list) else str(problems)
        if field == "_schema":
            raise ApiError(400, problem) from None
        raise ApiError(400, f"Invalid input for field '{field}': {problem}") from None


GLANCE = request_body.Dialect(read=_read, load=_load,
                              extra_key=lambda key: ApiError(400, f"Unexpected property '{key}'."),
                              not_object=lambda name, value: ApiError(400, f"'{name}' must be a JSON object."))


def body_schema(schema: type[Schema]) -> Callable:
    return request_body.body_schema(GLANCE, schema)


class MemberCreateSchema(Schema):
    """POST /v2/images/{id}/members: the project to share with (the view words the errors as Glance)."""
    class Meta:
        unknown = INCLUDE

    member = fields.String(required=True, validate=validate.Length(min=1, max=255))


class MemberUpdateSchema(Schema):
    class Meta:
        unknown = INCLUDE

    status = fields.String(required=True, validate=validate.OneOf(("pending", "accepted", "rejected")))


class ImportMethodSchema(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, validate=validate.OneOf(("glance-direct", "web-download")))
    # web-download's, through the view's URI filter (which words a missing or null one)
    uri = fields.String(allow_none=True, metadata={"type": "string", "format": "uri"})


class ImportSchema(Schema):
    """POST /v2/images/{id}/import: the method, and the one store Stratus has (``file``)."""
    class Meta:
        unknown = INCLUDE

    method = fields.Nested(ImportMethodSchema, required=True)
    stores = fields.List(fields.String(validate=validate.OneOf(("file",))))
    all_stores = _bool()
    all_stores_must_succeed = _bool()
    method.json_schema = {  # type: ignore[attr-defined]
        "if": {"properties": {"name": {"const": "web-download"}}}, "then": {"required": ["uri"]}}
