"""What the Networking views share: Neutron's errors, its query language for lists (filters with
filter-validation, ``fields``, ``sort_key``/``sort_dir``, ``limit``/``marker``/``page_reverse`` and the
``<collection>_links``), and the owner of the built-in network."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, NoReturn
from urllib.parse import urlencode

from flask import g, jsonify, request
from sqlalchemy import select

from app.context import RequestContext, current
from app.policy import authorize
from core.errors import ApiError
from core.models import Project

PREFIX = "/networking"
# Query parameters that are not filters (Neutron skips them when it validates filters).
_NOT_FILTERS = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}
_TRUE, _FALSE = {"true", "1", "t", "yes", "y", "on"}, {"false", "0", "f", "no", "n", "off"}


def not_found(kind: str, ident: str) -> ApiError:
    """Neutron's ``<Kind>NotFound``: what does not exist and what the caller may not see answer alike."""
    return ApiError(404, f"{kind} {ident} could not be found.", error_code=f"{kind}NotFound")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, error_code="HTTPBadRequest")


def unsupported(message: str) -> ApiError:
    """A write the policy allows that Stratus's network cannot make (its network and subnet come from the
    configuration, its ports with servers): Neutron's 409 ``Conflict``, the state of the resource refusing it (not
    Neutron's 501 for a plugin without the operation: a 5xx would say the cloud is broken)."""
    return ApiError(409, message, error_code="Conflict")


def write_check(rule: str, owner: str) -> None:
    """The view's rule again, for the item's project (the caller passed it for its own): Neutron's policy on an
    update or delete of an item the caller can see, 403 when the caller's project owns the item, else 404 (Neutron
    pretends another project's item is not there)."""
    try:
        authorize(rule, owner)
    except ApiError as exc:
        if exc.code == 403 and owner != current().project_id:
            raise ApiError(404, "The resource could not be found.", error_code="HTTPNotFound") from None
        raise


def refuse_write(rule: str, owner: str, message: str) -> NoReturn:
    """An update or delete Stratus cannot make: the item's policy first (403/404 as Neutron), then 409 ``message``."""
    write_check(rule, owner)
    raise unsupported(message)


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise bad_request(f"Invalid input for operation: '{text}' cannot be converted to boolean.")


def _matches(item: dict, key: str, values: list[str]) -> bool:
    value = item.get(key)
    if isinstance(value, bool):
        return value in {parse_bool(v) for v in values}
    if value is None:
        return False
    return str(value) in values


def filters(filterable: Iterable[str]) -> dict[str, list[str]]:
    """The request's filters (a key repeated is several allowed values; empty values are dropped, as Neutron
    does); a key that is no attribute of the resource is refused (Neutron's filter-validation)."""
    allowed = set(filterable)
    out: dict[str, list[str]] = {}
    for key in request.args:
        if key in _NOT_FILTERS:
            continue
        if key not in allowed:
            raise bad_request(f"[{key}] is invalid attribute for filtering")
        values = [v for v in request.args.getlist(key) if v]
        if values:
            out[key] = values
    return out


def apply_filters(items: list[dict], wanted: dict[str, list[str]],
                  special: dict[str, Callable[[dict, list[str]], bool]] | None = None) -> list[dict]:
    special = special or {}
    for key, values in wanted.items():
        test = special.get(key)
        items = [i for i in items if (test(i, values) if test else _matches(i, key, values))]
    return items


def _sorted(items: list[dict], sortable: set[str]) -> list[dict]:
    keys, dirs = request.args.getlist("sort_key"), request.args.getlist("sort_dir")
    keys, dirs = [k for k in keys if k], [d for d in dirs if d]
    if len(keys) != len(dirs):
        raise bad_request("The number of sort_keys and sort_dirs must be same")
    absent = [k for k in keys if k not in sortable]
    if absent:
        raise bad_request(f"{absent} is invalid attribute for sort_keys")
    invalid = [d for d in dirs if d not in ("asc", "desc")]
    if invalid:
        raise bad_request(f"{invalid} is invalid value for sort_dirs, valid value is 'asc' and 'desc'")
    order = list(zip(keys, [d == "asc" for d in dirs]))
    if "id" not in keys:
        order.append(("id", True))  # the primary key settles ties, so markers are stable (Neutron's paging)

    def compare(a: dict, b: dict) -> int:
        for key, ascending in order:
            x, y = a.get(key), b.get(key)
            ret = 0 if x is None and y is None else -1 if x is None else 1 if y is None else (x > y) - (x < y)
            if ret:
                return ret if ascending else -ret
        return 0
    return sorted(items, key=functools.cmp_to_key(compare))


def _limit() -> int:
    raw = request.args.get("limit", "0")
    try:
        limit = int(raw)
    except ValueError:
        limit = -1
    if limit < 0:
        raise bad_request(f"Limit must be an integer 0 or greater and not '{raw}'")
    return limit


def _link(rel: str, marker: str | None, reverse: bool) -> dict:
    params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("marker", "page_reverse")]
    if marker is not None:
        params.append(("marker", marker))
    if reverse:
        params.append(("page_reverse", "True"))
    return {"rel": rel, "href": f"{request.base_url}?{urlencode(params)}"}


def _page(items: list[dict], limit: int) -> tuple[list[dict], list[dict]]:
    """Neutron's emulated pagination (neutron/api/api_common.py): the page after (or before, ``page_reverse``)
    the marker, and the next/previous links."""
    if not limit:
        return items, []
    marker = request.args.get("marker")
    reverse = request.args.get("page_reverse", "False").lower() == "true"
    i = -1
    if marker:
        for i, item in enumerate(items):
            if item["id"] == marker:
                break
    page = items[max(i - limit, 0):max(i, 0)] if reverse else items[i + 1:i + limit + 1]
    links = []
    if not (len(page) < limit and not reverse):
        links.append(_link("next", page[-1]["id"] if page else None, False))
    if not (len(page) < limit and reverse):
        links.append(_link("previous", page[0]["id"] if page else None, True))
    return page, links


def _fields(item: dict) -> dict:
    wanted = [f for f in request.args.getlist("fields") if f]
    return {k: v for k, v in item.items() if k in wanted} if wanted else item


def listing(collection: str, items: list[dict], special: dict[str, Callable[[dict, list[str]], bool]] | None = None,
            extra_filters: Iterable[str] = ()):
    """The JSON answer to a list: filtered, sorted, paged and cut to ``fields``, as Neutron answers it."""
    wanted = filters(set(ATTRIBUTES[collection]) | set(special or {}) | set(extra_filters))
    items = apply_filters(items, wanted, special)
    items = _sorted(items, set(ATTRIBUTES[collection]))
    page, links = _page(items, _limit())
    body: dict[str, Any] = {collection: [_fields(i) for i in page]}
    if links:
        body[f"{collection}_links"] = links
    return jsonify(body)


def show(member: str, item: dict):
    return jsonify({member: _fields(item)})


# The attributes of each resource (filterable and sortable), whether or not any item exists to show them.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "networks": ("id", "name", "status", "admin_state_up", "shared", "subnets", "project_id", "tenant_id", "mtu",
                 "router:external", "description"),
    "subnets": ("id", "name", "network_id", "ip_version", "cidr", "gateway_ip", "enable_dhcp", "project_id",
                "tenant_id", "ipv6_ra_mode", "ipv6_address_mode", "subnetpool_id", "description"),
    "ports": ("id", "name", "network_id", "mac_address", "admin_state_up", "status", "device_id", "device_owner",
              "project_id", "tenant_id", "description"),
}


def network_owner() -> str:
    """The project that owns the built-in network: the bootstrap's ``admin`` project (an operator's network, as
    a provider network an admin creates); empty before the bootstrap ran."""
    if "network_owner" not in g:
        from core.db import read_session
        with read_session() as s:
            g.network_owner = s.scalar(select(Project.id).where(Project.domain_id == "default",
                                                                Project.name == "admin")) or ""
    return g.network_owner


def can_see_all(ctx: RequestContext) -> bool:
    return ctx.is_admin
