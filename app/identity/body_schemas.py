"""Request bodies of the Identity API (Keystone's v3 JSON schemas, as far as Stratus serves them) as marshmallow
schemas: the views load their bodies with them (``app.identity.inputs.body_schema``) and the OpenAPI document
shows them. Keystone allows unknown properties in project and user bodies (they are ignored here). A rule that
spans fields (a user named by id, or by name and domain) is a ``validates_schema`` check, and its JSON Schema
keywords sit on the field that nests the schema (``json_schema``)."""
from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.fields import StrictBoolean
from app.identity.service import DEFAULT_DOMAIN_ID

_NOT_BLANK = validate.Regexp(r"^\s*\S", error="'{input}' is not a valid name")


def _keywords(field: fields.Field, **keywords: Any) -> fields.Field:
    field.json_schema = keywords  # type: ignore[attr-defined]
    return field


class _Open(Schema):
    class Meta:
        unknown = INCLUDE


def _bool(**kw: Any) -> fields.Boolean:
    return StrictBoolean(**kw)


def _default_domain(**kw: Any) -> fields.String:
    """Stratus has one domain: another id is Keystone's 'not allowed' (400)."""
    return fields.String(allow_none=True, validate=validate.OneOf([DEFAULT_DOMAIN_ID]), **kw)


class ProjectCreateSchema(_Open):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=64), _NOT_BLANK])
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))
    enabled = _bool()
    domain_id = fields.String(allow_none=True)  # an unknown domain is a 404
    parent_id = _default_domain()  # no project hierarchies
    is_domain = _bool(validate=validate.OneOf([False]))  # JSON false only (0 is not a boolean)


class ProjectUpdateSchema(_Open):
    """Keystone's project_update: at least one property; a name as at create."""
    class Meta(_Open.Meta):
        json_schema = {"minProperties": 1}

    name = fields.String(validate=[validate.Length(min=1, max=64), _NOT_BLANK])
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))
    enabled = _bool()
    domain_id = _default_domain()

    @validates_schema(pass_original=True)
    def _something(self, data: dict, original: Any, **kw: Any) -> None:
        if not original:
            raise ValidationError("{} does not have enough properties")


class _UserFields(_Open):
    password = fields.String(allow_none=True, validate=validate.Length(min=1, max=4096))
    email = fields.String(allow_none=True, validate=validate.Length(max=255))
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))
    default_project_id = fields.String(allow_none=True)  # an unknown project is a 404
    enabled = _bool()


class UserCreateSchema(_UserFields):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), _NOT_BLANK])
    domain_id = fields.String(allow_none=True)


class UserUpdateSchema(_UserFields):
    name = fields.String(validate=validate.Length(max=255))
    domain_id = _default_domain()


class PasswordChangeSchema(_Open):
    password = fields.String(required=True, validate=[validate.Length(min=1, max=4096), _NOT_BLANK])
    original_password = fields.String(required=True, validate=[validate.Length(min=1, max=4096), _NOT_BLANK])


class RoleCreateSchema(_Open):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), _NOT_BLANK])
    domain_id = fields.String(allow_none=True, validate=validate.Length(max=0))  # no domain-specific roles


class RoleUpdateSchema(_Open):
    name = fields.String(validate=validate.Length(max=255))


class DomainRefSchema(_Open):
    id = fields.String()
    name = fields.String()


class _NamedRef(_Open):
    """A user or project: by ``id``, or by ``name`` and ``domain``."""
    id = fields.String(validate=validate.Length(min=1))
    name = fields.String(validate=validate.Length(min=1))
    domain = fields.Nested(DomainRefSchema)

    @validates_schema
    def _id_or_name_and_domain(self, data: dict, **kw: Any) -> None:
        if not data.get("id") and not (data.get("name") and isinstance(data.get("domain"), dict)):
            raise ValidationError("Expecting to find domain. The server could not comply with the request since it "
                                  "is either malformed or otherwise incorrect.")


_ID_OR_NAME = {"anyOf": [{"required": ["id"]}, {"required": ["name", "domain"]}]}


class PasswordUserSchema(_NamedRef):
    password = fields.String(required=True)


class PasswordMethodSchema(_Open):
    user = _keywords(fields.Nested(PasswordUserSchema, required=True), **_ID_OR_NAME)


class TokenMethodSchema(_Open):
    id = fields.String(required=True)


class ApplicationCredentialMethodSchema(_Open):
    """By id, or by name and its user (as a password method's user: by id, or by name and domain)."""
    id = fields.String()
    name = fields.String()
    user = _keywords(fields.Dict(), **_ID_OR_NAME)
    secret = fields.String(required=True)


_METHODS = ("application_credential", "password", "token")  # the view's order when several are named


class IdentitySchema(_Open):
    methods = fields.List(fields.String(validate=validate.OneOf(_METHODS)), required=True,
                          validate=validate.Length(min=1), metadata={"minItems": 1})
    application_credential = _keywords(fields.Nested(ApplicationCredentialMethodSchema),
                                       anyOf=[{"required": ["id"]}, {"required": ["name", "user"]}])
    password = fields.Nested(PasswordMethodSchema)
    token = fields.Nested(TokenMethodSchema)

    @validates_schema
    def _method_body(self, data: dict, **kw: Any) -> None:
        for method in _METHODS:
            if method in data.get("methods", []):
                if method not in data:
                    raise ValidationError(f"'{method}' is a required property", method)
                return


class ProjectScopeSchema(_Open):
    project = _keywords(fields.Nested(_NamedRef, required=True), **_ID_OR_NAME)


class ScopeField(fields.Field):
    """``"unscoped"``, a project scope or the system scope ``{"system": {"all": true}}`` (other scopes are
    Keystone's, not Stratus's: 401)."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        ref = {"type": "object", **_ID_OR_NAME, "properties": {
            "id": {"type": "string", "minLength": 1}, "name": {"type": "string", "minLength": 1},
            "domain": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}}}
        self.json_schema = {"oneOf": [{"type": "string", "enum": ["unscoped"]},
                                      {"type": "object", "required": ["project"], "properties": {"project": ref}},
                                      {"type": "object", "required": ["system"], "maxProperties": 1, "properties": {
                                          "system": {"type": "object", "required": ["all"],
                                                     "properties": {"all": {"const": True}}}}}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if value == "unscoped":
            return value
        if not isinstance(value, dict):
            raise ValidationError("Invalid input for field 'scope'.")
        if "project" in value:
            ProjectScopeSchema(unknown=INCLUDE).load(value)
        return value


class AuthSchema(_Open):
    # the first method of application_credential, password and token that ``methods`` names needs its object
    identity = _keywords(fields.Nested(IdentitySchema, required=True), **{
        "if": {"properties": {"methods": {"contains": {"const": "application_credential"}}}},
        "then": {"required": ["application_credential"]},
        "else": {"if": {"properties": {"methods": {"contains": {"const": "password"}}}},
                 "then": {"required": ["password"]},
                 "else": {"if": {"properties": {"methods": {"contains": {"const": "token"}}}},
                          "then": {"required": ["token"]}}}})
    scope = ScopeField()


class GroupCreateSchema(_Open):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=64), _NOT_BLANK])
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))
    domain_id = fields.String(allow_none=True)  # an unknown domain is a 404


class _KeepsId(_Open):
    """An update (or a create at a path naming the id): the body's ``id`` may only be null or repeat the path's
    (Keystone's _require_matching_id), so the document shows it null."""
    class Meta(_Open.Meta):
        json_schema = {"dependentSchemas": {"id": {"properties": {"id": {"type": "null"}}}}}


class GroupUpdateSchema(_KeepsId):
    name = fields.String(validate=validate.Length(max=64))
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))
    domain_id = _default_domain()


class _ServiceFields(_Open):
    name = fields.String(allow_none=True, validate=validate.Length(max=255))
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    enabled = _bool()


class CatalogServiceCreateSchema(_ServiceFields):
    type = fields.String(required=True, validate=[validate.Length(min=1, max=255), _NOT_BLANK])


class CatalogServiceUpdateSchema(_ServiceFields, _KeepsId):
    type = fields.String(validate=[validate.Length(min=1, max=255), _NOT_BLANK])


# an http(s) URL with a host (urllib reads it: no brackets outside an IPv6 literal, which Stratus does not need).
# Blanks are spelled out: "\s" is not the same class in Python's re and in a JSON Schema (ECMA) engine.
_URL = validate.Regexp(r"^https?://[^/?#\[\]\x00-\x20\x7f]+([/?#][^\x00-\x20\x7f\[\]]*)?$",
                       error="'{input}' is not a valid URL")


class _EndpointFields(_Open):
    region_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))  # unknown: 400
    region = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))  # legacy: created
    enabled = _bool()


class EndpointCreateSchema(_EndpointFields):
    service_id = fields.String(required=True, validate=validate.Length(min=1, max=64))  # unknown: 400
    interface = fields.String(required=True, validate=validate.OneOf(["public", "internal", "admin"]))
    url = fields.String(required=True, validate=[validate.Length(max=2048), _URL])


class EndpointUpdateSchema(_EndpointFields, _KeepsId):
    service_id = fields.String(validate=validate.Length(min=1, max=64))
    interface = fields.String(validate=validate.OneOf(["public", "internal", "admin"]))
    url = fields.String(validate=[validate.Length(max=2048), _URL])


class _RegionFields(_Open):
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    parent_region_id = fields.String(allow_none=True)  # unknown: 404


class RegionCreateSchema(_RegionFields):
    id = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))


class RegionUpdateSchema(_RegionFields, _KeepsId):
    pass


class ApplicationCredentialCreateSchema(_Open):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), _NOT_BLANK])
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))
    secret = fields.String(allow_none=True, validate=validate.Length(min=1, max=4096))
    unrestricted = _bool()
    expires_at = fields.String(allow_none=True, metadata={"format": "date-time"})  # in the future (the view)
    # each role by id or by name (the view reads them: unknown ones are 404s, ones the token lacks 400s)
    roles = _keywords(fields.List(fields.Dict(), allow_none=True), items={"type": "object", "anyOf": [
        {"required": ["id"], "properties": {"id": {"type": "string"}}},
        {"required": ["name"], "properties": {"name": {"type": "string"}}}]})
    # Stratus keeps no access rules
    access_rules = fields.List(fields.Dict(), allow_none=True, validate=validate.Length(max=0),
                               metadata={"maxItems": 0})
