"""Server tags (API 2.26+) outside their own routes: Nova's tag rules, the tags given at create (2.52+), the
tags a server body shows and the tag filters of the server list. Flask-free."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, func, not_, select
from sqlalchemy.orm import Session

from core.errors import bad_request
from core.models import Instance, InstanceTag
from core.states import MAX_TAGS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from app.microversion import APIVersion

MIN_VERSION = "2.26"


def validate_tag(tag: object, field: str = "tags") -> str:
    """Nova's parameter_types.tag: a string of 1..60 characters without ',' or '/'."""
    if not isinstance(tag, str):
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {tag!r}. {tag!r} is not of type "
                          f"'string'")
    if not 1 <= len(tag) <= 60:
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {tag}. '{tag}' is too "
                          f"{'short' if not tag else 'long'}")
    if "," in tag or "/" in tag:
        raise bad_request(f"Invalid input for field/attribute {field}. Value: {tag}. '{tag}' does not match "
                          f"'^[^,/]*$'")
    return tag


def validate_tags(tags: object) -> list[str]:
    if not isinstance(tags, list):
        raise bad_request(f"Invalid input for field/attribute tags. Value: {tags!r}. {tags!r} is not of type "
                          f"'array'")
    if len(tags) > MAX_TAGS:
        raise bad_request(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
    return [validate_tag(t) for t in tags]


def parse_create_tags(body: dict) -> list[str]:
    """Tags given at server create (2.52+; the create's version gates reject them earlier)."""
    return validate_tags(body["tags"]) if body.get("tags") else []


def tags_of(s: Session, uuids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if uuids:
        for uuid, tag in s.execute(select(InstanceTag.instance_uuid, InstanceTag.tag)
                                   .where(InstanceTag.instance_uuid.in_(uuids)).order_by(InstanceTag.tag)):
            out.setdefault(uuid, []).append(tag)
    return out


def list_filters(args: Mapping[str, str], v: APIVersion) -> list[ColumnElement]:
    """Server list filters (2.26+): tags (all of), tags-any, not-tags (not all of), not-tags-any (none of)."""
    if not v.matches(MIN_VERSION):
        return []
    conds: list[ColumnElement] = []

    def having_all(tags: list[str]):
        return (select(InstanceTag.instance_uuid).where(InstanceTag.tag.in_(tags))
                .group_by(InstanceTag.instance_uuid).having(func.count(InstanceTag.tag) == len(set(tags))))

    def having_any(tags: list[str]):
        return select(InstanceTag.instance_uuid).where(InstanceTag.tag.in_(tags))

    for name, build, negate in (("tags", having_all, False), ("tags-any", having_any, False),
                                ("not-tags", having_all, True), ("not-tags-any", having_any, True)):
        if name in args:
            tags = [t.strip() for t in args[name].split(",") if t.strip()]
            if not tags:
                continue
            cond = Instance.uuid.in_(build(tags))
            conds.append(not_(cond) if negate else cond)
    return conds
