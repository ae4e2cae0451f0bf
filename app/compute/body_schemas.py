"""Request bodies of the Compute sub-resource APIs (metadata, tags, aggregates, flavor access and extra specs,
services, quotas) as marshmallow schemas: the views load their bodies with them (``@body_schema``) and the OpenAPI
document shows them. A field whose rule marshmallow's validators cannot name in JSON Schema (a map's key pattern)
carries the keywords itself (``json_schema``), next to the validator that enforces them."""
from __future__ import annotations

import re
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.compute.console_urls import TYPE_PROTOCOL
from app.compute.names import AZ_NAME_PATTERN, NAME_WITH_SPACES_PATTERN
from app.compute.schemas import FQDN_CHARS, KEY_PATTERN, KEY_RE, MAX_INT, KeyedMap, NovaName, StrictSchema, is_uuid
from app.fields import NovaBoolean
from core import quota
from core.states import MAX_TAGS

class NovaText(fields.String):
    """A string whose errors read as Nova's JSON Schema ones ("1 is not of type 'string'", "'...' is too long")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError(f"{value!r} is not of type 'string'")
        return super()._deserialize(value, attr, data, **kw)


def _text(max_len: int = 255, **kw: Any) -> fields.String:
    return NovaText(validate=validate.Length(max=max_len, error="'{input}' is too long"), **kw)


def _spec_value() -> fields.Field:
    """An extra spec's value: a string, number or boolean of at most 255 characters (Nova takes all three)."""
    return StringNumberOrBool()


class StringNumberOrBool(fields.Field):
    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.json_schema = {"type": ["string", "number", "boolean"], "maxLength": 255}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if not isinstance(value, (str, int, float, bool)):
            raise ValidationError(f"{value!r} is not of type 'string', 'number', 'boolean'")
        if isinstance(value, str) and len(value) > 255:
            raise ValidationError(f"'{value}' is too long")
        return value


class MetadataBodySchema(StrictSchema):
    metadata = KeyedMap(_text(), required=True)


class MetaBodySchema(StrictSchema):
    """PUT /servers/{id}/metadata/{key}: exactly the one item named in the path."""
    meta = KeyedMap(_text(), required=True, validate=validate.Length(equal=1),
                    metadata={"minProperties": 1, "maxProperties": 1})


class TagsBodySchema(StrictSchema):
    tags = fields.List(NovaText(validate=[  # Nova's JSON Schema wording (clients and tests match on it)
        validate.Length(min=1, error="'{input}' is too short"), validate.Length(max=60, error="'{input}' is too long"),
        validate.Regexp(r"^[^,/]*$", error="'{input}' does not match '^[^,/]*$'")]),
                       required=True, metadata={"maxItems": MAX_TAGS})  # the view counts them, in Nova's words


class AggregateCreateSchema(StrictSchema):
    name = NovaName(required=True)
    availability_zone = NovaName(AZ_NAME_PATTERN, allow_none=True)


class AggregateUpdateSchema(StrictSchema):
    """Nova's update takes a name with leading or trailing spaces (not its create)."""
    name = NovaName(NAME_WITH_SPACES_PATTERN)
    availability_zone = NovaName(AZ_NAME_PATTERN, allow_none=True)

    class Meta(StrictSchema.Meta):
        json_schema = {"minProperties": 1}

    @validates_schema
    def _something(self, data: dict, **kw: Any) -> None:
        if not data:
            raise ValidationError("{} does not have enough properties")


class AggregateHostSchema(StrictSchema):
    host = NovaText(required=True, validate=[  # Nova's parameter_types.fqdn
        validate.Length(min=1, error="'{input}' is too short"), validate.Length(max=255, error="'{input}' is too long"),
        validate.Regexp(FQDN_CHARS, error=f"'{{input}}' does not match '{FQDN_CHARS}'")])


class AggregateMetadataSchema(StrictSchema):
    metadata = KeyedMap(_text(allow_none=True), required=True)


class AggregateActionSchema(StrictSchema):
    """Exactly one of the actions."""
    add_host = fields.Nested(AggregateHostSchema)
    remove_host = fields.Nested(AggregateHostSchema)
    set_metadata = fields.Nested(AggregateMetadataSchema)

    class Meta(StrictSchema.Meta):
        json_schema = {"minProperties": 1, "maxProperties": 1}


class TenantSchema(StrictSchema):
    tenant = fields.String(required=True, validate=validate.Length(min=1, max=255))


class FlavorActionSchema(StrictSchema):
    addTenantAccess = fields.Nested(TenantSchema)
    removeTenantAccess = fields.Nested(TenantSchema)

    class Meta(StrictSchema.Meta):
        json_schema = {"minProperties": 1, "maxProperties": 1}


class ExtraSpecsBodySchema(StrictSchema):
    extra_specs = KeyedMap(_spec_value(), required=True, validate=validate.Length(min=1),
                           metadata={"minProperties": 1})


class ExtraSpecBodySchema(Schema):
    """PUT /flavors/{id}/os-extra_specs/{key}: {key: value}, the one key named in the path."""

    class Meta:
        unknown = INCLUDE
        json_schema = {"type": "object", "minProperties": 1, "maxProperties": 1,
                       "propertyNames": {"pattern": KEY_PATTERN},
                       "additionalProperties": {"type": ["string", "number", "boolean"], "maxLength": 255}}

    @validates_schema
    def _one_spec(self, data: dict, **kw: Any) -> None:
        if len(data) != 1:
            raise ValidationError("Request body contains too many items" if data else "An extra spec is required")
        ((key, value),) = data.items()
        if not KEY_RE.match(key):
            raise ValidationError(f"'{key}' does not match '{KEY_PATTERN}'")
        StringNumberOrBool().deserialize(value)


class FlavorUpdateSchema(StrictSchema):
    description = fields.String(required=True, allow_none=True, validate=validate.Length(max=65535))


class ServiceUpdateSchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(["enabled", "disabled"]))
    disabled_reason = fields.String(validate=validate.Length(min=1, max=255))
    forced_down = NovaBoolean()

    class Meta(StrictSchema.Meta):
        # a disabled_reason goes with status "disabled" (the view words the error as Nova)
        json_schema = {"minProperties": 1, "dependentSchemas": {"disabled_reason": {
            "required": ["status"], "properties": {"status": {"const": "disabled"}}}}}


# Nova's quota string: '^-?[0-9]+$' whose number is -1 .. MAX_INT (2147483647), leading zeros and "-0" included.
_UP_TO_MAX_INT = ("[0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|"
                  "21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7]")
QUOTA_STRING = f"^(-0*1|-0+|0*({_UP_TO_MAX_INT}))$"


class QuotaValue(fields.Field):
    """A limit: an integer (5.0 is one too), or a string of digits, from -1 (unlimited) to MAX_INT."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        assert MAX_INT == 2147483647  # QUOTA_STRING spells it out
        self.json_schema = {"oneOf": [{"type": "integer", "minimum": -1, "maximum": MAX_INT},
                                      {"type": "string", "pattern": QUOTA_STRING}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        return value  # the view checks the range with Nova's messages


def quota_schema(name: str, resources: list[str], force: bool) -> type[Schema]:
    """The body under quota_set / quota_class_set: the settable resources at a microversion (and ``force``)."""
    attrs: dict[str, Any] = {r: QuotaValue() for r in resources}
    if force:
        attrs["force"] = fields.Raw(metadata={"type": "boolean"})
    return type(name, (StrictSchema,), attrs)


def _quota_versions(filtered, prefix: str, force: bool) -> tuple[type[Schema], dict[str, type[Schema]]]:
    from app.microversion import APIVersion
    base = quota_schema(f"{prefix}Schema", quota.visible(filtered(APIVersion(2, 1))), force)
    newer = {v: quota_schema(f"{prefix}V{v.replace('.', '')}Schema",
                             quota.visible(filtered(APIVersion(*map(int, v.split("."))))), force)
             for v in ("2.36", "2.50", "2.57")}
    return base, newer


QUOTA_SET, QUOTA_SET_VERSIONS = _quota_versions(quota.filtered_for_quota_sets, "QuotaSet", True)
QUOTA_CLASS_SET, QUOTA_CLASS_SET_VERSIONS = _quota_versions(quota.filtered_for_quota_classes, "QuotaClassSet", False)


class ImageRefSchema(StrictSchema):
    # a UUID, kept as the string it came as (what a schema loads stays JSON)
    id = fields.String(required=True, validate=lambda value: is_uuid(value), metadata={"format": "uuid"})


class CacheImagesSchema(StrictSchema):
    """2.81: the images an aggregate's hosts pre-cache, each once."""
    cache = fields.List(fields.Nested(ImageRefSchema), required=True, validate=validate.Length(min=1),
                        metadata={"minItems": 1, "uniqueItems": True})


class NullArgument(fields.Field):
    """An action that takes no argument: ``null``."""

    def __init__(self, **kw: Any):
        super().__init__(allow_none=True, **kw)
        self.json_schema = {"type": "null"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        raise ValidationError(f"{value!r} is not of type 'null'")


class MigrationActionSchema(StrictSchema):
    force_complete = NullArgument(required=True)


class RemoteConsoleSchema(StrictSchema):
    """A console type and its protocol, among the ones Stratus serves."""
    protocol = fields.String(required=True, validate=validate.OneOf(sorted(set(TYPE_PROTOCOL.values()))))
    type = fields.String(required=True, validate=validate.OneOf(sorted(TYPE_PROTOCOL)))

    class Meta(StrictSchema.Meta):
        json_schema = {"oneOf": [{"properties": {"protocol": {"const": protocol}, "type": {"const": kind}}}
                                 for kind, protocol in sorted(TYPE_PROTOCOL.items())]}

    @validates_schema
    def _pair(self, data: dict, **kw: Any) -> None:
        if TYPE_PROTOCOL.get(data.get("type")) != data.get("protocol"):
            raise ValidationError(f"Unavailable console type {data.get('type')}.")


class HostUpdateSchema(StrictSchema):
    """PUT /os-hosts/{host_name}: ``status`` and ``maintenance_mode``, "enable" or "disable" (the view reads them
    as Nova, case and blanks aside). Maintenance mode is not implemented (501), so the document shows status."""
    class Meta(StrictSchema.Meta):
        json_schema = {"required": ["status"]}

    removed = {"maintenance_mode": "2.1"}
    status = fields.String(metadata={"enum": ["enable", "disable"]})
    maintenance_mode = fields.String(metadata={"enum": ["enable", "disable"]})
