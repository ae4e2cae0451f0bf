"""RBAC in the spirit of Nova's secure RBAC defaults: admin, project member, project reader.

Every view declares its rule with ``@enforce("rule")`` (or ``@public``). An after-request hook fails closed:
a response from a view that never ran a policy check is replaced by a 500 and logged.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request

from app.context import RequestContext, current
from app.errors import ApiError, error_response

LOG = logging.getLogger(__name__)

Check = Callable[[RequestContext, str | None], bool]


def _admin(ctx: RequestContext, target: str | None) -> bool:
    return ctx.is_admin


def _project_member(ctx: RequestContext, target: str | None) -> bool:
    return ctx.is_admin or (ctx.is_member and ctx.project_id is not None and target in (None, ctx.project_id))


def _project_reader(ctx: RequestContext, target: str | None) -> bool:
    return ctx.is_admin or (ctx.is_reader and ctx.project_id is not None and target in (None, ctx.project_id))


def _any_authenticated(ctx: RequestContext, target: str | None) -> bool:
    return True


RULES: dict[str, Check] = {
    "admin_api": _admin,
    "project_member_api": _project_member,
    "project_reader_api": _project_reader,
    "authenticated": _any_authenticated,
}


def check(rule: str, target_project: str | None = None) -> None:
    """Raise 403 unless the caller passes ``rule`` for ``target_project``."""
    g.policy_checked = True
    ctx = current()
    if not RULES[rule](ctx, target_project):
        raise ApiError(403, f"Policy doesn't allow {request.endpoint} to be performed.")


def enforce(rule: str) -> Callable:
    """Check ``rule`` before the view runs (the target project is the caller's own)."""
    if rule not in RULES:
        raise KeyError(f"unknown policy rule {rule}")

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            check(rule)
            return view(*args, **kwargs)
        return inner
    return wrap


def public(view: Callable) -> Callable:
    @functools.wraps(view)
    def inner(*args: Any, **kwargs: Any) -> Any:
        g.policy_checked = True
        return view(*args, **kwargs)
    return inner


def init_app(app: Flask) -> None:
    @app.after_request
    def _fail_closed(resp):
        # Error responses raised before/inside a view (401, 404 routing, 400) need no policy decision.
        if resp.status_code < 400 and not g.get("policy_checked") and request.endpoint != "static":
            LOG.error("view %s returned without a policy check; refusing the response", request.endpoint)
            return error_response(500, "Internal policy enforcement error.")
        return resp
