"""What the Placement views share: policy names, input checks with Placement's 400s, the provider body."""
from __future__ import annotations

import re
from typing import Any

from flask import request

from app.placement.microversion import PREFIX, at_least
from app.policy import enforce
from core import placement as view
from core.errors import ApiError
from tasks.messaging import rpc

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def rule(name: str, description: str = ""):
    """Placement's default: admin or service role (``placement:<name>``); others get 403."""
    return enforce("admin_or_service", name=f"placement:{name}", description=description)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, error_code="placement.undefined_code")


def not_found(message: str) -> ApiError:
    return ApiError(404, message, error_code="placement.undefined_code")


def call(name: str, *args: Any) -> Any:
    return rpc.call(f"stratus.conductor.placement_{name}", *args)


def json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise bad_request("Malformed JSON: the request body must be a JSON object.")
    return data


def check_keys(data: dict, allowed: set[str], required: set[str] = frozenset()) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise bad_request(f"JSON does not validate: Additional properties are not allowed ({extra[0]!r} was "
                          f"unexpected)")
    missing = sorted(required - set(data))
    if missing:
        raise bad_request(f"JSON does not validate: {missing[0]!r} is a required property")


def integer(data: dict, key: str, minimum: int = 0, maximum: int = view.MAX_INT, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise bad_request(f"JSON does not validate: {key} must be an integer from {minimum} to {maximum}, "
                          f"got {value!r}")
    return value


def uuid_arg(value: object, what: str = "uuid") -> str:
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise bad_request(f"JSON does not validate: {what} {value!r} is not a 'uuid'")
    return value


def generation(data: dict) -> int:
    if "resource_provider_generation" not in data:
        raise bad_request("JSON does not validate: 'resource_provider_generation' is a required property")
    return integer(data, "resource_provider_generation")


def provider_or_404(s, uuid: str) -> view.Provider:
    prov = view.provider(s, uuid) if UUID_RE.match(uuid) else None
    if prov is None:
        raise not_found(f"No resource provider with uuid {uuid} found")
    return prov


def base_url() -> str:
    return request.script_root + PREFIX


def location(path: str) -> str:
    """An absolute Location (clients such as osc-placement GET it as given; a path would be joined to the
    endpoint, which already ends in /placement)."""
    return request.url_root.rstrip("/") + PREFIX + path


def provider_body(prov: view.Provider) -> dict:
    href = f"{base_url()}/resource_providers/{prov.uuid}"
    links = [{"rel": "self", "href": href}, {"rel": "inventories", "href": f"{href}/inventories"},
             {"rel": "usages", "href": f"{href}/usages"}]
    if at_least("1.1"):
        links.append({"rel": "aggregates", "href": f"{href}/aggregates"})
    if at_least("1.6"):
        links.append({"rel": "traits", "href": f"{href}/traits"})
    if at_least("1.11"):
        links.append({"rel": "allocations", "href": f"{href}/allocations"})
    body = {"uuid": prov.uuid, "name": prov.name, "generation": prov.generation, "links": links}
    if at_least("1.14"):
        body.update(parent_provider_uuid=prov.parent_uuid, root_provider_uuid=prov.root_uuid)
    return body


def query_list(key: str) -> list[str]:
    return request.args.getlist(key)


def resource_filters() -> dict:
    """The query's ``resources``, ``required`` and ``member_of``, parsed with Placement's 400s (the caller has
    checked which of them the negotiated version allows)."""
    out: dict = {}
    try:
        if "resources" in request.args:
            out["resources"] = view.parse_resources(request.args["resources"])
        if "required" in request.args:
            out["traits"] = view.parse_required(query_list("required"), at_least("1.22"), at_least("1.39"))
        if "member_of" in request.args:
            out["member_of"] = view.parse_member_of(query_list("member_of"), at_least("1.24"), at_least("1.32"))
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return out


def candidates_body(found: list[view.Candidate], resources: dict[str, int]) -> dict:
    """allocation_requests and provider_summaries in the negotiated version's shape: the version is read once,
    not per candidate, and what every candidate shares (its request's resources) is one object."""
    v12, v17, v27, v29, v34 = (at_least(v) for v in ("1.12", "1.17", "1.27", "1.29", "1.34"))
    requests, summaries = [], {}
    asked = {"resources": resources}
    for uuid, inventories, traits, parent, root in found:
        if v12:
            entry = {"allocations": {uuid: asked}}
            if v34:
                entry["mappings"] = {"": [uuid]}
        else:
            entry = {"allocations": [{"resource_provider": {"uuid": uuid}, "resources": resources}]}
        requests.append(entry)
        summary: dict = {"resources": inventories if v27 else {rc: inventories[rc] for rc in resources}}
        if v17:
            summary["traits"] = traits
        if v29:
            summary["parent_provider_uuid"] = parent
            summary["root_provider_uuid"] = root
        summaries[uuid] = summary
    return {"allocation_requests": requests, "provider_summaries": summaries}
