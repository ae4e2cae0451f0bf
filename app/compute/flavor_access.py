"""Flavor access lists (os-flavor-access) and flavor extra specs (os-extra_specs), as Nova."""
from __future__ import annotations

import re

from flask import Blueprint, jsonify
from sqlalchemy import select

from app.compute import extra_spec_rules
from app.compute.body_schemas import ExtraSpecBodySchema, ExtraSpecsBodySchema, FlavorActionSchema
from app.compute.request_body import body_schema, json_body
from app.compute.visible_flavors import get_flavor
from app.context import current
from app.microversion import current as api_version
from app.policy import authorize, checks_inside, enforce, register
from core.db import read_session
from core.errors import bad_request, not_found
from core.models import FlavorProject
from tasks.messaging import rpc

bp = Blueprint("flavor_access", __name__)
_SPEC_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")
_ACCESS = "os_compute_api:os-flavor-access"
_SPECS = "os_compute_api:os-flavor-extra-specs"
register(f"{_ACCESS}:add_tenant_access", "admin_api", "Add flavor access to a tenant")
register(f"{_ACCESS}:remove_tenant_access", "admin_api", "Remove flavor access from a tenant")


def _access_list(flavor_id: str) -> list[dict]:
    flavor = get_flavor(flavor_id, current())
    with read_session() as s:
        projects = s.scalars(select(FlavorProject.project_id).where(FlavorProject.flavor_id == flavor.id)
                             .order_by(FlavorProject.id))
        return [{"flavor_id": flavor.flavorid, "tenant_id": p} for p in projects]


@bp.get("/flavors/<flavor_id>/os-flavor-access")
@enforce("admin_api", name=_ACCESS, description="List flavor access information")
def list_flavor_access(flavor_id: str):
    if get_flavor(flavor_id, current()).is_public:
        raise not_found("Access list not available for public flavors.")
    return jsonify({"flavor_access": _access_list(flavor_id)})


def _tenant(args: object, action: str) -> str:
    if not isinstance(args, dict) or set(args) != {"tenant"} or not isinstance(args["tenant"], str) \
            or not 1 <= len(args["tenant"]) <= 255:
        raise bad_request(f"Invalid input for field/attribute {action}. 'tenant' is a required property and the "
                          f"only one allowed")
    return args["tenant"]


@bp.post("/flavors/<flavor_id>/action")
@checks_inside(*((f"{_ACCESS}:{a}", "admin_api") for a in ("add_tenant_access", "remove_tenant_access")))
@body_schema(FlavorActionSchema)
def flavor_action(_loaded: dict, flavor_id: str):
    data = json_body()
    if len(data) != 1:
        raise bad_request("Invalid flavor action: exactly one action is required.")
    action, args = next(iter(data.items()))
    if action == "addTenantAccess":
        authorize(f"{_ACCESS}:add_tenant_access")
        tenant = _tenant(args, action)
        get_flavor(flavor_id, current())
        rpc.call("stratus.conductor.add_flavor_access", flavor_id, tenant)
    elif action == "removeTenantAccess":
        authorize(f"{_ACCESS}:remove_tenant_access")
        tenant = _tenant(args, action)
        get_flavor(flavor_id, current())
        rpc.call("stratus.conductor.remove_flavor_access", flavor_id, tenant)
    else:
        raise bad_request(f"There is no such action: {action}")
    return jsonify({"flavor_access": _access_list(flavor_id)})


def _specs(data: object) -> dict[str, str]:
    """Validated extra specs as strings (Nova accepts strings, numbers and booleans); from 2.86 each is also
    checked against Nova's extra-spec validators (app/compute/extra_spec_rules.py)."""
    if not isinstance(data, dict) or not data:
        raise bad_request("Invalid input for field/attribute extra_specs. It must be a non-empty object.")
    out = {}
    for key, value in data.items():
        if not _SPEC_KEY.match(key):
            raise bad_request(f"Invalid input for field/attribute extra_specs. Value: {key}. Keys must be 1 to "
                              f"255 characters of letters, digits, space and -_:.")
        if isinstance(value, bool) or isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str) or not 0 <= len(value) <= 255:
            raise bad_request(f"Invalid input for field/attribute {key}. Value: {value!r}. It must be a string, "
                              f"number or boolean of at most 255 characters.")
        if api_version().matches("2.86"):
            try:
                extra_spec_rules.validate(key, value)
            except extra_spec_rules.ExtraSpecError as exc:
                raise bad_request(str(exc)) from None
        out[key] = value
    return out


@bp.get("/flavors/<flavor_id>/os-extra_specs")
@enforce("project_reader_api", name=f"{_SPECS}:index", description="List extra specs for a flavor")
def list_extra_specs(flavor_id: str):
    return jsonify({"extra_specs": dict(get_flavor(flavor_id, current()).extra_specs or {})})


@bp.post("/flavors/<flavor_id>/os-extra_specs")
@enforce("admin_api", name=f"{_SPECS}:create", description="Create extra specs for a flavor")
@body_schema(ExtraSpecsBodySchema)
def create_extra_specs(_loaded: dict, flavor_id: str):
    data = json_body()
    if set(data) != {"extra_specs"}:
        raise bad_request("Invalid input for field/attribute extra_specs. 'extra_specs' is a required property")
    specs = _specs(data["extra_specs"])
    get_flavor(flavor_id, current())
    rpc.call("stratus.conductor.set_flavor_extra_specs", flavor_id, specs)
    return jsonify({"extra_specs": specs})


@bp.get("/flavors/<flavor_id>/os-extra_specs/<key>")
@enforce("project_reader_api", name=f"{_SPECS}:show", description="Show an extra spec for a flavor")
def show_extra_spec(flavor_id: str, key: str):
    specs = get_flavor(flavor_id, current()).extra_specs or {}
    if key not in specs:
        raise not_found(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return jsonify({key: specs[key]})


@bp.put("/flavors/<flavor_id>/os-extra_specs/<key>")
@enforce("admin_api", name=f"{_SPECS}:update", description="Update an extra spec for a flavor")
@body_schema(ExtraSpecBodySchema)
def update_extra_spec(_loaded: dict, flavor_id: str, key: str):
    data = json_body()
    if len(data) > 1:
        raise bad_request("Request body contains too many items")
    if key not in data:
        raise bad_request("Request body and URI mismatch")
    specs = _specs(data)
    get_flavor(flavor_id, current())
    rpc.call("stratus.conductor.set_flavor_extra_specs", flavor_id, specs)
    return jsonify(specs)


@bp.delete("/flavors/<flavor_id>/os-extra_specs/<key>")
@enforce("admin_api", name=f"{_SPECS}:delete", description="Delete an extra spec for a flavor")
def delete_extra_spec(flavor_id: str, key: str):
    get_flavor(flavor_id, current())
    rpc.call("stratus.conductor.delete_flavor_extra_spec", flavor_id, key)
    return "", 200
