"""Request bodies of the Compute API as marshmallow schemas (unknown fields rejected, as Nova's schemas do), the
loader that turns their errors into Nova's messages, and the checks of fields that depend on the microversion.
Flask-free: views declare a body's schema with ``app.compute.request_body.body_schema``."""
from __future__ import annotations

import base64
import binascii
import functools
import re
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from app.compute.names import INVALID_NAME, NAME_PATTERN, invalid_name
from app.fields import NovaBoolean, WholeNumber
from core.errors import bad_request

if TYPE_CHECKING:
    from app.microversion import APIVersion

_HOST_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}$")
_FQDN_RE = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")
FQDN_CHARS = "^[a-zA-Z0-9-._]*$"  # Nova's parameter_types.fqdn (with 1 to 255 characters)
# Nova's database limits (nova/db/constants.py): larger numbers are refused by the schema, not by the database.
MAX_INT = 2147483647
SQL_SP_FLOAT_MAX = 3.40282e+38


def load(schema: Schema, data: Any, root: str | None = None) -> dict:
    """Validate with marshmallow; errors become Nova's "Invalid input for field/attribute" 400."""
    if root is not None:
        if not isinstance(data, dict) or root not in data:
            raise bad_request(f"Invalid input for field/attribute {root}. Value: {data!r}. "
                              f"'{root}' is a required property")
        data = data[root]
        if not isinstance(data, dict):
            raise bad_request(f"Invalid input for field/attribute {root}. Value: {data!r}. "
                              f"{data!r} is not of type 'object'")
    try:
        return schema.load(data)
    except ValidationError as exc:
        field, problems = next(iter(sorted(exc.messages.items())))
        problem = problems[0] if isinstance(problems, list) else str(problems)
        if problem == "Unknown field.":
            raise bad_request(f"Additional properties are not allowed ('{field}' was unexpected)") from None
        if problem.startswith(INVALID_NAME):  # Nova's InvalidName is the whole message
            raise bad_request(problem) from None
        if problem == "Missing data for required field.":
            raise bad_request(f"Invalid input for field/attribute {root or field}. Value: {data!r}. "
                              f"'{field}' is a required property") from None
        value = data.get(field) if isinstance(data, dict) else data
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {value!r}. {problem}") from None


def action_argument(action: str, schema: type[Schema]) -> Callable:
    """A server action's handler takes its argument loaded with ``schema``, as the body ``{action: argument}``
    (Nova's 400 otherwise); app/compute/actions.py shows the same schema in the OpenAPI document."""
    loader = schema()  # loading keeps no state in the instance

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def inner(server_id: str, args: object) -> Any:
            return handler(server_id, load(loader, {action: args}, root=action))
        inner.argument_schema = schema  # type: ignore[attr-defined]
        return inner
    return wrap


def check_no_args(name: str, args: object) -> None:
    """An action that takes no argument: null or an empty object."""
    if args not in (None, {}):
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {args!r}. {args!r} is not of type "
                          f"'null'")


def is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(str(value))
        return True
    except ValueError:
        return False


class NovaName(fields.String):
    """A name in one of Nova's name formats (app/compute/names.py), 1 to 255 characters; the document shows the
    format's pattern."""

    def __init__(self, pattern: str = NAME_PATTERN, **kw: Any):
        super().__init__(validate=validate.Length(min=1, max=255), **kw)
        self.pattern = pattern
        self.json_schema = {"pattern": pattern}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        problem = invalid_name(self.pattern, loaded)
        if problem:
            raise ValidationError(problem)
        return loaded


class RxtxFactor(fields.Float):
    """Nova's flavor rxtx_factor: a number or a string of digits (with decimals), above 0 (Nova's flavor code
    refuses 0, which its schema's exclusiveMinimum cannot say of a string) up to SQL_SP_FLOAT_MAX."""
    _STRING = r"^[0-9]+(\.[0-9]+)?$"
    json_schema = {"type": ["number", "string"], "exclusiveMinimum": 0,
                   "pattern": r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, str) and not re.match(self._STRING, value)):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class ServerName(NovaName):
    """Nova's parameter_types.name (servers, flavors, server groups, images and backups of servers)."""


class IPv4(fields.IPv4):
    """An IPv4 address, loaded as its normalized string: what is loaded travels to the conductor as JSON."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        return None if loaded is None else str(loaded)


class IPv6(fields.IPv6):
    """An IPv6 address, loaded as its normalized (compressed) string, as Nova shows it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        return None if loaded is None else str(loaded)


KEY_PATTERN = r"^[a-zA-Z0-9-_:. ]{1,255}$"  # Nova's metadata / extra spec / aggregate metadata keys
KEY_RE = re.compile(KEY_PATTERN)


class KeyedMap(fields.Dict):
    """A JSON object whose keys match Nova's key pattern; ``values`` as for fields.Dict."""

    def __init__(self, values: fields.Field, **kw: Any):
        # a key outside the pattern reads as Nova's (patternProperties + additionalProperties: false)
        key = fields.String(validate=validate.Regexp(
            KEY_RE, error="Additional properties are not allowed ('{input}' was unexpected)"))
        super().__init__(keys=key, values=values, **kw)
        self.json_schema = {"propertyNames": {"pattern": KEY_PATTERN}}


class StrictSchema(Schema):
    """Unknown fields are refused. ``gates``: fields (by JSON key) a request may carry only from a microversion on;
    ``removed``: fields refused from a microversion on (views check both with check_version_gated; the OpenAPI
    document of a microversion leaves them out)."""
    gates: ClassVar[dict[str, str]] = {}
    removed: ClassVar[dict[str, str]] = {}

    class Meta:
        unknown = RAISE


class NetworkSchema(StrictSchema):
    uuid = fields.String()
    port = fields.String()
    fixed_ip = fields.String()
    tag = fields.String()


# A create's network: the built-in one, named by its uuid (Stratus has no ports and picks the fixed IP itself).
NETWORK_ITEM = {"type": "object", "required": ["uuid"], "additionalProperties": False,
                "properties": {"uuid": {"type": "string", "format": "uuid"}}}
BASE64 = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class ServerCreateSchema(StrictSchema):
    class Meta(StrictSchema.Meta):
        # a hostname names one server (the view words the error as Nova); without a volume service the server
        # boots from an image (a block device mapping may only restate it, and the document shows none)
        json_schema = {"required": ["name", "flavorRef", "imageRef"], "dependentSchemas": {"hostname": {
            "properties": {"max_count": {"maximum": 1}, "min_count": {"maximum": 1}}}}}

    gates = {"description": "2.19", "tags": "2.52", "trusted_image_certificates": "2.63", "host": "2.74",
             "hypervisor_hostname": "2.74", "hostname": "2.90"}
    removed = {"personality": "2.57"}
    name = ServerName(required=True)
    imageRef = fields.String(load_default="", metadata={"minLength": 1})
    flavorRef = fields.Raw(required=True, metadata={"type": ["string", "integer"], "minLength": 1})
    adminPass = fields.String(validate=validate.Length(max=255))
    metadata = KeyedMap(fields.String(validate=validate.Length(max=255)))
    user_data = fields.String(validate=validate.Regexp(BASE64))
    key_name = fields.String(validate=validate.Length(min=1, max=255))
    availability_zone = fields.String(validate=validate.Length(min=1, max=255))
    min_count = WholeNumber(validate=validate.Range(min=1, max=MAX_INT))
    max_count = WholeNumber(validate=validate.Range(min=1, max=MAX_INT))
    return_reservation_id = NovaBoolean()
    networks = fields.Raw(metadata={"type": "array", "maxItems": 1, "items": NETWORK_ITEM})  # the view checks it
    config_drive = NovaBoolean()  # Nova's parameter_types.boolean
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    accessIPv4 = IPv4()
    accessIPv6 = IPv6()
    security_groups = fields.List(fields.Dict())
    # Stratus has no volume service: a mapping can only restate the local image disk (the view checks it), so
    # the document shows none
    block_device_mapping = fields.List(fields.Dict(), metadata={"maxItems": 0})
    block_device_mapping_v2 = fields.List(fields.Dict(), metadata={"maxItems": 0})
    personality = fields.List(fields.Dict())
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=60)), validate=validate.Length(max=50))
    hostname = fields.String(validate=[validate.Length(min=1, max=255), validate.Regexp(
        _FQDN_RE, error="'{input}' does not match '{regex}'")])
    host = fields.String()
    hypervisor_hostname = fields.String()
    # refused when not empty (Stratus does not verify image signatures: check_trusted_certs)
    trusted_image_certificates = fields.List(fields.String(), allow_none=True, metadata={"maxItems": 0})
    # Legacy extension keys some clients send.
    OS_DCF_diskConfig = fields.String(data_key="OS-DCF:diskConfig", validate=validate.OneOf(["AUTO", "MANUAL"]))

    @validates("flavorRef")
    def _flavor_ref(self, value: Any, **_: Any) -> None:
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
            raise ValidationError(f"{value!r} is not a valid flavor reference")

    @validates("user_data")
    def _user_data(self, value: str, **_: Any) -> None:
        if len(value) > 65535:
            raise ValidationError("user_data is longer than 65535 bytes")
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("User data needs to be valid base 64.") from None


class ServerCreateV237Schema(ServerCreateSchema):
    """2.37: ``networks`` is required, and may be "auto" or "none"."""
    networks = fields.Raw(required=True, metadata={"oneOf": [
        {"type": "string", "enum": ["auto", "none"]}, {"type": "array", "maxItems": 1, "items": NETWORK_ITEM}]})


class RebootSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(["SOFT", "HARD", "soft", "hard"]))


class KeypairCreateSchema(StrictSchema):
    gates = {"type": "2.2", "user_id": "2.10"}
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255),
                                                  validate.Regexp(r"^[a-zA-Z0-9 _\-]+$",
                                                                  error="Keypair name contains unsafe characters")])
    public_key = fields.String(validate=validate.Length(max=16384))
    type = fields.String(validate=validate.OneOf(["ssh", "x509"]))
    user_id = fields.String()


class FlavorId(fields.Field):
    """Nova's flavor ``id``: a string (1-255 characters of its pattern), a number or null; stored as a string
    (nova/compute/flavors.py ``str(flavorid)``), and a false-like one (null, 0) asks for a generated id."""
    _PATTERN = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")
    json_schema = {"type": ["string", "number", "null"], "minLength": 1, "maxLength": 255,
                   "pattern": _PATTERN.pattern}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError(f"{value!r} is not of type 'string', 'number', 'null'")
        if not isinstance(value, str):
            return str(value) if value else None
        if not 1 <= len(value) <= 255:
            raise ValidationError(f"'{value}' should be 1 to 255 characters long")
        if not self._PATTERN.match(value):
            raise ValidationError(f"'{value}' does not match the flavor id pattern")
        return value


class KeypairCreateV292Schema(KeypairCreateSchema):
    """2.92 allows '@' and '.' in names, and takes no more requests to generate a key: public_key is required."""
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255),
                                                  validate.Regexp(r"^[a-zA-Z0-9 _\-@.]+$",
                                                                  error="Keypair name contains unsafe characters")])
    public_key = fields.String(required=True, validate=validate.Length(max=16384))


class FlavorCreateSchema(StrictSchema):
    name = ServerName(required=True)
    id = FlavorId(allow_none=True)
    ram = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_INT))
    vcpus = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_INT))
    disk = fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_INT))
    OS_FLV_EXT_DATA_ephemeral = fields.Integer(data_key="OS-FLV-EXT-DATA:ephemeral",
                                               validate=validate.Range(min=0, max=MAX_INT))
    swap = fields.Integer(validate=validate.Range(min=0, max=MAX_INT))
    rxtx_factor = RxtxFactor(validate=validate.Range(min=0, max=SQL_SP_FLOAT_MAX, min_inclusive=False))
    os_flavor_access_is_public = NovaBoolean(data_key="os-flavor-access:is_public")
    description = fields.String(allow_none=True, validate=validate.Length(max=65535))


class ServerUpdateSchema(StrictSchema):
    gates = {"description": "2.19", "hostname": "2.90"}
    name = ServerName()
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    hostname = fields.String(validate=[validate.Length(min=1, max=255), validate.Regexp(
        _FQDN_RE, error="'{input}' does not match '{regex}'")])
    accessIPv4 = IPv4()
    accessIPv6 = IPv6()
    OS_DCF_diskConfig = fields.String(data_key="OS-DCF:diskConfig", validate=validate.OneOf(["AUTO", "MANUAL"]))


class LockSchema(StrictSchema):
    locked_reason = fields.String(validate=validate.Length(min=1, max=255))


class SecurityGroupArgument(Schema):
    """``addSecurityGroup``/``removeSecurityGroup``'s argument as the document shows it: an object naming a group
    with something other than blanks (Nova's own parse, app/compute/security_group_actions.py, answers the rest)."""
    name = fields.String(required=True, metadata={"pattern": r"\S"})


_GROUP_POLICIES = ["anti-affinity", "affinity"]
_SOFT_POLICIES = [*_GROUP_POLICIES, "soft-anti-affinity", "soft-affinity"]


def _policies(choices: list[str]) -> fields.Raw:
    return fields.Raw(required=True, metadata={"type": "array", "minItems": 1, "maxItems": 1,
                                               "items": {"type": "string", "enum": choices}})


class ServerGroupCreateSchema(StrictSchema):
    """Before 2.64: ``policies``, a list of exactly one policy; the view checks it with Nova's messages."""
    name = ServerName(required=True)
    policies = _policies(_GROUP_POLICIES)


class ServerGroupCreateV215Schema(ServerGroupCreateSchema):
    """2.15: the soft policies."""
    policies = _policies(_SOFT_POLICIES)


class ServerGroupCreateV264Schema(StrictSchema):
    """From 2.64: one ``policy`` and its ``rules`` (only anti-affinity's max_server_per_host); the view checks them
    with Nova's messages."""
    name = ServerName(required=True)
    policy = fields.Raw(required=True, metadata={"type": "string", "enum": _SOFT_POLICIES})
    rules = fields.Raw(metadata={"type": "object", "additionalProperties": False, "properties": {
        "max_server_per_host": {"type": ["integer", "string"], "pattern": "^0*[1-9][0-9]{0,8}$", "minimum": 1,
                                "maximum": MAX_INT}}})  # Nova's positive_integer

    class Meta(StrictSchema.Meta):
        json_schema = {"if": {"properties": {"policy": {"const": "anti-affinity"}}},
                       "else": {"properties": {"rules": {"maxProperties": 0}}}}




def check_hostname(value: str, fqdn_allowed: bool) -> None:
    """2.90's ``hostname`` is one DNS label; from 2.94 it may be a fully qualified domain name."""
    pattern = _FQDN_RE if fqdn_allowed else _HOSTNAME_RE
    if not pattern.match(value) or len(value) > 255:
        raise bad_request(f"Invalid input for field/attribute hostname. Value: {value}. {value!r} does not match "
                          f"'{pattern.pattern}'")


def check_trusted_certs(certs: list[str] | None) -> None:
    """2.63: Stratus does not verify image signatures, so (like Nova with ``verify_glance_signatures`` off) a
    request for certificate validation is refused instead of being silently ignored."""
    if certs:
        raise bad_request("Image signature certificate validation support is not yet enabled: Stratus does not "
                          "verify image signatures, so trusted_image_certificates cannot be honoured.")


def check_version_gated(body: dict, gates: dict[str, str], v: APIVersion) -> None:
    """Fields newer than the request's microversion ``v`` (``gates``: field -> first version) are unknown
    properties, as is ``personality`` from 2.57; hostname and trusted certificates are checked as of ``v``."""
    for field, min_version in gates.items():
        if field in body and not v.matches(min_version):
            raise bad_request(f"Additional properties are not allowed ('{field}' was unexpected)")
    if "personality" in body and v.matches("2.57"):  # the create's and rebuild's ``removed``
        raise bad_request("Additional properties are not allowed ('personality' was unexpected)")
    if "hostname" in body:
        check_hostname(body["hostname"], v.matches("2.94"))
    check_trusted_certs(body.get("trusted_image_certificates"))
