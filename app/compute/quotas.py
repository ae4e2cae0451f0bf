"""os-quota-sets and os-quota-class-sets (Nova's shapes per microversion; writes go through the conductor)."""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request

from app.compute.body_schemas import QUOTA_CLASS_SET, QUOTA_CLASS_SET_VERSIONS, QUOTA_SET, QUOTA_SET_VERSIONS
from app.compute.request_body import body_schema, json_body
from app.microversion import current as api_version
from app.policy import authorize, checks_inside, enforce
from core import quota
from core.db import read_session
from core.errors import bad_request
from core.models import Project
from tasks.messaging import rpc

bp = Blueprint("quotas", __name__)

_INT_RE = re.compile(r"^-?[0-9]+$")
_TRUE = ("true", "1", "on", "yes")
_FALSE = ("false", "0", "off", "no")


def _authorized(rule: str) -> Callable:
    """The project's policy rule before the body is read: a reader gets 403 whatever it sends."""
    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, project_id: str, **kwargs: Any) -> Any:
            authorize(rule, project_id)
            return view(*args, project_id=project_id, **kwargs)
        return inner
    return wrap


def _verify_project(project_id: str) -> None:
    """Nova asks Keystone whether the project exists; an unknown one is a 400."""
    with read_session() as s:
        if s.get(Project, project_id) is None:
            raise bad_request(f"Project ID {project_id} is not a valid project.")


def _limit_value(resource: str, value: object) -> int:
    """One quota value as Nova's schema takes it: an integer (JSON Schema's, so 5.0 too) or a string of digits,
    -1 (unlimited) .. MAX_INT; Nova stores int(value)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad_request(f"Invalid input for field/attribute {resource}. Value: {value!r}. {value!r} is not of "
                          f"type 'integer', 'string'")
    if isinstance(value, str):
        if not _INT_RE.match(value):
            raise bad_request(f"Invalid input for field/attribute {resource}. Value: {value}. '{value}' does not "
                              f"match '^-?[0-9]+$'")
        value = int(value)
    if value < -1:
        raise bad_request(f"Invalid input for field/attribute {resource}. Value: {value}. {value} is less than "
                          f"the minimum of -1")
    if value > quota.MAX_INT:
        raise bad_request(f"Invalid input for field/attribute {resource}. Value: {value}. {value} is greater "
                          f"than the maximum of {quota.MAX_INT}")
    return value


def _parse(root: str, allowed: list[str], with_force: bool) -> tuple[dict[str, int], bool]:
    body = json_body()
    if root not in body:
        raise bad_request(f"'{root}' is a required property")
    extra = set(body) - {root}
    if extra:
        raise bad_request(f"Additional properties are not allowed ('{sorted(extra)[0]}' was unexpected)")
    items = body[root]
    if not isinstance(items, dict):
        raise bad_request(f"Invalid input for field/attribute {root}. Value: {items!r}. {items!r} is not of type "
                          f"'object'")
    unknown = sorted(set(items) - set(allowed) - ({"force"} if with_force else set()))
    if unknown:
        raise bad_request(f"Invalid input for field/attribute {root}. Value: {items!r}. Additional properties are "
                          f"not allowed ('{unknown[0]}' was unexpected)")
    force = False
    if "force" in items:
        raw = items["force"]
        text = str(raw).lower() if isinstance(raw, (bool, str)) else None
        if text not in _TRUE + _FALSE:
            raise bad_request(f"Invalid input for field/attribute force. Value: {raw!r}. {raw!r} is not a boolean")
        force = text in _TRUE
    return {k: _limit_value(k, v) for k, v in items.items() if k != "force"}, force


def _quota_set(limits: dict[str, int], keys: list[str], project_id: str | None = None) -> dict:
    out: dict = {"id": project_id} if project_id is not None else {}
    out.update({k: limits[k] for k in keys})
    return out


# --- os-quota-sets -------------------------------------------------------------------------------------------------

def _keys() -> list[str]:
    return quota.visible(quota.filtered_for_quota_sets(api_version()))


def _user_id() -> str | None:
    """``?user_id=`` (its first value, as Nova); from 2.75 any other query parameter is a 400."""
    if api_version().matches("2.75"):
        for name in request.args:
            if name != "user_id":
                raise bad_request(f"Additional properties are not allowed ('{name}' was unexpected)")
    return request.args.get("user_id") or None


def _limits(s, project_id: str, user_id: str | None) -> dict[str, int]:
    return quota.user_limits(s, project_id, user_id) if user_id else quota.project_limits(s, project_id)


@bp.get("/os-quota-sets/<project_id>")
@checks_inside(("os_compute_api:os-quota-sets:show", "project_reader_api"))
def show_quota_set(project_id: str):
    """The project's limits, or (``?user_id=``) the user's: their own, else the project's."""
    authorize("os_compute_api:os-quota-sets:show", project_id)
    _verify_project(project_id)
    user_id = _user_id()
    with read_session() as s:
        limits = _limits(s, project_id, user_id)
    return jsonify({"quota_set": _quota_set(limits, _keys(), project_id)})


@bp.get("/os-quota-sets/<project_id>/detail")
@checks_inside(("os_compute_api:os-quota-sets:detail", "project_reader_api"))
def show_quota_set_detail(project_id: str):
    authorize("os_compute_api:os-quota-sets:detail", project_id)
    _verify_project(project_id)
    user_id = _user_id()
    with read_session() as s:
        limits = _limits(s, project_id, user_id)
        used = quota.usage(s, project_id, user_id)
    detail = {k: {"in_use": used[k], "limit": limits[k], "reserved": 0} for k in _keys()}
    return jsonify({"quota_set": {"id": project_id, **detail}})


@bp.get("/os-quota-sets/<project_id>/defaults")
@enforce("authenticated")
def show_quota_set_defaults(project_id: str):
    _verify_project(project_id)
    with read_session() as s:
        limits = quota.class_limits(s)
    return jsonify({"quota_set": _quota_set(limits, _keys(), project_id)})


@bp.put("/os-quota-sets/<project_id>")
@checks_inside(("os_compute_api:os-quota-sets:update", "admin_api"))
@_authorized("os_compute_api:os-quota-sets:update")
@body_schema(QUOTA_SET, root="quota_set", versions=QUOTA_SET_VERSIONS)
def update_quota_set(_loaded: dict, project_id: str):
    """Admin only: the project's limits, or (``?user_id=``) a user's, within Nova's settable range unless
    ``force`` (the conductor checks it in the transaction that writes)."""
    authorize("os_compute_api:os-quota-sets:update", project_id)
    _verify_project(project_id)
    user_id = _user_id()
    keys = _keys()
    values, force = _parse("quota_set", keys, with_force=True)
    if values:
        rpc.call("stratus.conductor.update_quota_set", project_id, values, force, user_id)
    with read_session() as s:
        limits = _limits(s, project_id, user_id)
    return jsonify({"quota_set": _quota_set(limits, keys)})


@bp.delete("/os-quota-sets/<project_id>")
@checks_inside(("os_compute_api:os-quota-sets:delete", "admin_api"))
def delete_quota_set(project_id: str):
    """Admin only: a user's limits (``?user_id=``), or the project's and all its users', revert to the
    defaults."""
    authorize("os_compute_api:os-quota-sets:delete", project_id)
    rpc.call("stratus.conductor.delete_quota_set", project_id, _user_id())
    return "", 202


# --- os-quota-class-sets -------------------------------------------------------------------------------------------

def _class_keys() -> list[str]:
    return quota.visible(quota.filtered_for_quota_classes(api_version()))


def _check_class_name(class_name: str) -> None:
    if not 1 <= len(class_name) <= 255:
        raise bad_request(f"Invalid input for field/attribute id. Value: {class_name}. The quota class name must "
                          f"be 1 to 255 characters")


@bp.get("/os-quota-class-sets/<class_name>")
@enforce("admin_api")
def show_quota_class_set(class_name: str):
    _check_class_name(class_name)
    with read_session() as s:
        limits = quota.class_limits(s, class_name)
    return jsonify({"quota_class_set": _quota_set(limits, _class_keys(), class_name)})


@bp.put("/os-quota-class-sets/<class_name>")
@enforce("admin_api")
@body_schema(QUOTA_CLASS_SET, root="quota_class_set", versions=QUOTA_CLASS_SET_VERSIONS)
def update_quota_class_set(_loaded: dict, class_name: str):
    _check_class_name(class_name)
    keys = _class_keys()
    values, _ = _parse("quota_class_set", keys, with_force=False)
    if values:
        rpc.call("stratus.conductor.update_quota_class_set", class_name, values)
    with read_session() as s:
        limits = quota.class_limits(s, class_name)
    return jsonify({"quota_class_set": _quota_set(limits, keys)})

