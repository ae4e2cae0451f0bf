"""Server metadata items (key/value pairs) as Nova checks them, wherever a request carries them (create, rebuild,
createImage, /servers/{id}/metadata). Flask-free."""
from __future__ import annotations

import re

from core.errors import ApiError, bad_request
from core.settings import get_settings

_KEY_RE = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")


def validate_metadata(metadata: object, field: str = "metadata") -> dict:
    """Nova's parameter_types.metadata: keys match ^[a-zA-Z0-9-_:. ]{1,255}$, values are strings ≤ 255."""
    if not isinstance(metadata, dict):
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {metadata!r}. {metadata!r} is not of "
                          f"type 'object'")
    for key, value in metadata.items():
        if not _KEY_RE.match(key):
            raise bad_request(f"Invalid input for field/attribute {field}. Value: {metadata!r}. Additional "
                              f"properties are not allowed ('{key}' was unexpected)")
        if not isinstance(value, str):
            raise bad_request(f"Invalid input for field/attribute {key}. Value: {value!r}. {value!r} is not of "
                              f"type 'string'")
        if len(value) > 255:
            raise bad_request(f"Invalid input for field/attribute {key}. Value: {value}. '{value}' is too long")
    return metadata


def check_create_quota(metadata: dict | None) -> None:
    """Server create: more items than quota_metadata_items is Nova's 403."""
    limit = get_settings().quota_metadata_items
    if metadata and 0 <= limit < len(metadata):
        raise ApiError(403, f"Maximum number of metadata items exceeds {limit}")
