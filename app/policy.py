"""RBAC like Nova's: named rules (``os_compute_api:servers:create``) with oslo.policy check strings.

Defaults follow Nova's secure RBAC (admin, project member, project reader). A YAML file named by the setting
``policy_file`` (env ``STRATUS_POLICY_FILE``) may override any rule by name; it is parsed at startup, and a
malformed check string stops the process with a clear error.

Views declare their rule with ``@enforce(level, name=...)``: ``level`` is the default (``admin_api``,
``admin_or_service``, ``project_manager_api``, ``project_member_api``, ``project_reader_api``, ``admin_or_owner``
or ``authenticated``), ``name`` the rule the
file may override. Views without a name use the Nova name of their endpoint from ``app.policy_names``. Views
that decide per request which rule applies (action dispatchers) declare their rules with ``@checks_inside`` and
call ``authorize(name, project)``; ``recheck(project)`` runs the view's rule again once the target resource
(and so its project, Nova's ``target={'project_id': instance.project_id}``) is known. An after-request hook
fails closed: a response from a view that never ran a policy check is replaced by a 500.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from flask import Flask, g, request

from app.context import RequestContext, current
from app.errors import error_response
from app.policy_names import ACTION_RULES, ENDPOINT_RULES, GLANCE_ACTIONS, SUB_RULES
from app.policy_rules import Check, PolicyError, effective_roles, evaluate, parse
from core.errors import ApiError
from core.settings import get_settings

LOG = logging.getLogger(__name__)

# Nova's base rules; per-API rules refer to them with ``rule:``.
BASE_RULES: dict[str, tuple[str, str]] = {
    "context_is_admin": ("role:admin", "Decides what is required for the 'is_admin:True' check to succeed."),
    "admin_api": ("role:admin", "Default rule for administrative APIs."),
    "project_manager_api": ("role:manager and project_id:%(project_id)s",
                            "Default rule for Project level management APIs."),
    "project_member_api": ("role:member and project_id:%(project_id)s",
                           "Default rule for Project level non admin APIs."),
    "project_reader_api": ("role:reader and project_id:%(project_id)s",
                           "Default rule for Project level read only APIs."),
    "project_manager_or_admin": ("rule:project_manager_api or rule:context_is_admin",
                                 "Default rule for Project Manager or admin APIs."),
    "project_member_or_admin": ("rule:project_member_api or rule:context_is_admin",
                                "Default rule for Project Member or admin APIs."),
    "project_reader_or_admin": ("rule:project_reader_api or rule:context_is_admin",
                                "Default rule for Project reader or admin APIs."),
    "service_api": ("role:service", "Default rule for service-to-service APIs (Keystone's service role)."),
}

# The levels views declare, as check strings over the base rules (admins act on any project, as today).
LEVELS: dict[str, str] = {
    "admin_api": "rule:admin_api",
    "admin_or_service": "rule:context_is_admin or rule:service_api",  # Placement's and Nova's service calls
    "project_manager_api": "rule:project_manager_or_admin",
    "project_member_api": "rule:project_member_or_admin",
    "project_reader_api": "rule:project_reader_or_admin",
    "admin_or_owner": "rule:context_is_admin or user_id:%(user_id)s",  # Nova's keypair rules
    "authenticated": "@",
    # Keystone's ADMIN_OR_SYSTEM_READER (its identity reads): an admin, or a reader on the system.
    "system_reader_api": "rule:admin_api or (role:reader and system_scope:all)",
}


def scope_allowed(ctx: RequestContext, path: str) -> bool:
    """Token scope against the API's rules' scope types, which no policy file changes: Keystone's rules accept
    system-scoped tokens; every Nova and Glance rule is project-scoped (``scope_types=['project']``, always
    enforced), so a system-scoped token gets their 403 whatever its roles."""
    return ctx.system_scope is None or path.startswith("/identity")


@dataclasses.dataclass(frozen=True)
class RuleDefault:
    name: str
    check_str: str
    description: str = ""


DEFAULTS: dict[str, RuleDefault] = {name: RuleDefault(name, check, desc) for name, (check, desc)
                                    in BASE_RULES.items()}


def register(name: str, level: str, description: str = "") -> None:
    """Declare a named rule whose default is ``level``. Registering one name with two levels is a bug."""
    if level not in LEVELS:
        raise KeyError(f"unknown policy level {level}")
    rule = RuleDefault(name, LEVELS[level], description)
    known = DEFAULTS.get(name)
    if known is not None and known.check_str != rule.check_str:
        raise ValueError(f"policy rule {name} registered with two defaults: {known.check_str!r}, {level!r}")
    if known is None or (description and not known.description):
        DEFAULTS[name] = rule


class Enforcer:
    """Parsed defaults plus the operator's overrides."""

    def __init__(self, overrides: Mapping[str, str] | None = None, source: str = "defaults"):
        self.source = source
        self.overrides: dict[str, Check] = {}
        for name, text in (overrides or {}).items():
            try:
                self.overrides[name] = parse(text)
            except PolicyError as exc:
                raise PolicyError(f"policy file {source}: rule {name!r}: {exc}") from None
        self._defaults: dict[str, Check] = {}
        self._levels = {level: parse(text) for level, text in LEVELS.items()}

    def get(self, name: str) -> Check | None:
        """The rule ``name``: the file's, else the default (modules register defaults as they are imported)."""
        if name in self.overrides:
            return self.overrides[name]
        if name not in self._defaults and name in DEFAULTS:
            self._defaults[name] = parse(DEFAULTS[name].check_str)
        return self._defaults.get(name)

    def allowed(self, name: str | None, level: str, ctx: RequestContext, target_project: str | None,
                target_user: str | None = None) -> bool:
        target = {"project_id": target_project or ctx.project_id, "user_id": target_user or ctx.user_id}
        creds = {"roles": effective_roles(ctx.roles), "project_id": ctx.project_id, "user_id": ctx.user_id,
                 "is_admin": ctx.is_admin, "system_scope": ctx.system_scope}
        if name is None:
            return evaluate(self._levels[level], target, creds, self)
        rule = self.get(name)
        return rule is not None and evaluate(rule, target, creds, self)  # unknown name: fail closed


def load_file(path: str) -> dict[str, str]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise PolicyError(f"policy file {path} must map rule names to check strings")
    return data


def load_enforcer(policy_file: str | None) -> Enforcer:
    if not policy_file:
        return Enforcer()
    return Enforcer(load_file(policy_file), source=policy_file)


_enforcer: Enforcer | None = None


def enforcer() -> Enforcer:
    global _enforcer
    if _enforcer is None:
        _enforcer = load_enforcer(get_settings().policy_file)
    return _enforcer


def check(level: str, target_project: str | None = None, name: str | None = None,
          target_user: str | None = None) -> None:
    """Raise 403 unless the caller passes rule ``name`` (default ``level``) for ``target_project``."""
    g.policy_checked = True
    if level not in LEVELS:
        raise KeyError(f"unknown policy level {level}")
    ctx = current()
    if not scope_allowed(ctx, request.path) or not enforcer().allowed(name, level, ctx, target_project,
                                                                       target_user):
        raise ApiError(403, _refusal(name),
                       error_code="PolicyNotAuthorized" if request.path.startswith("/networking/") else None)


def _refusal(name: str | None) -> str:
    """The 403 message of the API's policy engine: Glance's names its action, Nova's (and ours) the rule."""
    endpoint = request.endpoint or ""
    if request.path.startswith("/image"):
        return f"You are not authorized to complete {GLANCE_ACTIONS.get(endpoint, endpoint)} action."
    if request.path.startswith("/networking/"):  # oslo.policy's PolicyNotAuthorized, as Neutron raises it
        return f"rule:{name or endpoint} is disallowed by policy"
    return f"Policy doesn't allow {name or endpoint} to be performed."


def level_of(name: str) -> str:
    """The level a registered rule was declared with (its default)."""
    check_str = DEFAULTS[name].check_str
    return next(level for level, text in LEVELS.items() if text == check_str)


def authorize(name: str, target_project: str | None = None, target_user: str | None = None) -> None:
    """Check the registered rule ``name`` (its default level unless the policy file overrides it)."""
    check(level_of(name), target_project, name=name, target_user=target_user)


def recheck(target_project: str | None = None, target_user: str | None = None) -> None:
    """Run the view's rule again, now for the target resource's project (or user)."""
    name = g.get("policy_rule")
    if name is None:
        raise RuntimeError(f"{request.endpoint}: recheck without a named rule")  # a programming error: 500
    check(level_of(name), target_project, name=name, target_user=target_user)


def _endpoint_rule(name: str | None) -> str | None:
    return name or ENDPOINT_RULES.get(request.endpoint or "", (None,))[0]


def enforce(level: str, name: str | None = None, description: str = "") -> Callable:
    """Check rule ``name`` (default ``level``) before the view runs; the target project is the caller's own."""
    if level not in LEVELS:
        raise KeyError(f"unknown policy rule {level}")
    if name is not None:
        register(name, level, description)

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            g.policy_rule = _endpoint_rule(name)
            check(level, name=g.policy_rule)
            return view(*args, **kwargs)
        inner.policy_rules = (name,) if name else ()  # type: ignore[attr-defined]
        inner.policy_level = level  # type: ignore[attr-defined]  (the authorization matrix reads it)
        return inner
    return wrap


def checks_inside(*rules: tuple[str, str], registry: Mapping[str, tuple[str, str]] | None = None) -> Callable:
    """Declare a view that runs its own named check(s) with ``authorize``: ``rules`` are (rule name, level)
    pairs; ``registry`` a live table key -> (rule name, level) such as the server actions' (registered by
    ``init_app``)."""
    for rule, level in rules:
        register(rule, level)

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)
        inner.policy_rules = tuple(rule for rule, _ in rules)  # type: ignore[attr-defined]
        inner.policy_registry = registry  # type: ignore[attr-defined]
        return inner
    return wrap


def view_rules(endpoint: str, view: Callable) -> tuple[str, ...]:
    """The rule names a view checks (for tests and the dump); empty for a view without one."""
    names = tuple(getattr(view, "policy_rules", ()))
    registry = getattr(view, "policy_registry", None)
    if registry:
        names += tuple(name for name, _ in registry.values())
    if not names and endpoint in ENDPOINT_RULES and hasattr(view, "policy_rules"):
        names = (ENDPOINT_RULES[endpoint][0],)
    return names


def public(view: Callable) -> Callable:
    @functools.wraps(view)
    def inner(*args: Any, **kwargs: Any) -> Any:
        g.policy_checked = True
        return view(*args, **kwargs)
    inner.policy_public = True  # type: ignore[attr-defined]
    return inner


def sample_file() -> str:
    """Every registered rule with its default, as a YAML policy file (``flask stratus policy-dump``)."""
    lines = []
    for rule in sorted(DEFAULTS.values(), key=lambda r: (r.name not in BASE_RULES, r.name)):
        if rule.description:
            lines.append(f"# {rule.description}")
        lines.append(f"{yaml.safe_dump({rule.name: rule.check_str}, default_flow_style=False, width=1000).strip()}")
        lines.append("")
    return "\n".join(lines)


def _automatic_options() -> bool:
    """Whether this is an OPTIONS request Flask answers itself: only the methods of the matched route, no view."""
    rule = request.url_rule
    return request.method == "OPTIONS" and rule is not None and bool(getattr(rule, "provide_automatic_options",
                                                                              False))


def init_app(app: Flask) -> None:
    global _enforcer
    for table in (ENDPOINT_RULES, SUB_RULES, ACTION_RULES):  # the Nova names of endpoints, sub-rules and actions
        for name, level in table.values():
            register(name, level)
    _enforcer = load_enforcer(get_settings().policy_file)  # PolicyError here stops the process at startup
    LOG.info("policy: %d overrides from %s", len(_enforcer.overrides), _enforcer.source)

    @app.after_request
    def _fail_closed(resp):
        # Error responses raised before/inside a view (401, 404 routing, 400) need no policy decision, nor does
        # Flask's automatic OPTIONS answer (the route's Allow header; no view runs).
        if resp.status_code < 400 and not g.get("policy_checked") and request.endpoint != "static" \
                and not _automatic_options():
            LOG.error("view %s returned without a policy check; refusing the response", request.endpoint)
            return error_response(500, "Internal policy enforcement error.")
        return resp
