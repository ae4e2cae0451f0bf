"""Device tags at server create (2.32, restored at 2.42), as Nova's schemas allow them:

- ``networks[].tag``: 2.32 – 2.36 and 2.42 on (Nova's create_v232/v233 allowed it, create_v237 dropped it by
  mistake, create_v242 restored it);
- ``block_device_mapping_v2[].tag``: 2.32 only, then 2.42 on (create_v233 dropped it by mistake).

A tag is Nova's ``parameter_types.tag``: a string of 1–60 characters without ``,`` or ``/``. The tags are stored
with the NIC (fixed_ips.tag) and the root disk (instances.root_device_tag) and shown to the guest in the
``devices`` list of openstack/<version>/meta_data.json (core/metadata_docs.py). Flask-free: the request's
microversion is an argument.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from core.errors import bad_request

if TYPE_CHECKING:
    from app.microversion import APIVersion

_TAG_RE = re.compile(r"^[^,/]*$")
MAX_TAG_LENGTH = 60


def network_tags_allowed(v: APIVersion) -> bool:
    return (v.matches("2.32") and not v.matches("2.37")) or v.matches("2.42")


def bdm_tags_allowed(v: APIVersion) -> bool:
    return (v.matches("2.32") and not v.matches("2.33")) or v.matches("2.42")


def check_tag(value: object) -> str:
    """Nova's ``parameter_types.tag``, with its jsonschema messages."""
    if not isinstance(value, str):
        raise bad_request(f"Invalid input for field/attribute tag. Value: {value!r}. {value!r} is not of type "
                          f"'string'")
    if not value:
        raise bad_request("Invalid input for field/attribute tag. Value: . '' is too short")
    if len(value) > MAX_TAG_LENGTH:
        raise bad_request(f"Invalid input for field/attribute tag. Value: {value}. '{value}' is too long")
    if not _TAG_RE.match(value):
        raise bad_request(f"Invalid input for field/attribute tag. Value: {value}. '{value}' does not match "
                          f"'^[^,/]*$'")
    return value


def check_network_tags(networks: object, v: APIVersion) -> None:
    """400 for a ``tag`` in a ``networks`` entry at a version without it, or for a malformed one."""
    if not isinstance(networks, list):
        return
    for index, net in enumerate(networks):
        if isinstance(net, dict) and "tag" in net:
            if not network_tags_allowed(v):
                raise bad_request(f"Invalid input for field/attribute {index}. Value: {net!r}. Additional "
                                  f"properties are not allowed ('tag' was unexpected)")
            check_tag(net["tag"])


def root_device_tag(bdms: list[dict], v: APIVersion) -> str | None:
    """Check the ``tag`` of each block_device_mapping_v2 entry; the tag of the image disk (the root disk)."""
    root = None
    for index, bdm in enumerate(bdms):
        if isinstance(bdm, dict) and "tag" in bdm:
            if not bdm_tags_allowed(v):
                raise bad_request(f"Invalid input for field/attribute {index}. Value: {bdm!r}. Additional "
                                  f"properties are not allowed ('tag' was unexpected)")
            tag = check_tag(bdm["tag"])
            if root is None and bdm.get("source_type") == "image":
                root = tag
    return root
