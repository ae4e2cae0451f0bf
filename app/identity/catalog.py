"""The service catalog's rows (Keystone's /v3/services, /v3/endpoints, /v3/regions): admins write them, tokens
carry them (app.identity.bodies.service_catalog). Keystone's defaults: services and endpoints are read by admins,
regions by anyone signed in."""
from __future__ import annotations

import uuid
from urllib.parse import urlparse

from flask import Blueprint
from sqlalchemy import delete, select

from app.identity.bodies import v3_url
from app.identity.body_schemas import (CatalogServiceCreateSchema, CatalogServiceUpdateSchema, EndpointCreateSchema,
                                       EndpointUpdateSchema, RegionCreateSchema, RegionUpdateSchema)
from app.identity.inputs import (body_schema, bool_field, created, filtered_list, get_or_404, json_body, shown,
                                 str_field, updated)
from app.identity.service import INTERFACES
from app.policy import enforce
from core import db
from core.errors import ApiError
from core.models import CatalogService, Endpoint, Region

bp = Blueprint("identity_catalog", __name__)


def _validation(attribute: str, target: str) -> ApiError:
    return ApiError(400, f"Expecting to find {attribute} in {target}. The server could not comply with the "
                         "request since it is either malformed or otherwise incorrect. The client is assumed to "
                         "be in error.")


# --- services ---------------------------------------------------------------------------------------------------------

def service_body(svc: CatalogService) -> dict:
    body = {"id": svc.id, "type": svc.type, "enabled": svc.enabled, "links": {"self": v3_url(f"/services/{svc.id}")}}
    if svc.name:
        body["name"] = svc.name
    if svc.description:
        body["description"] = svc.description
    return body


def _service_fields(_s, data: dict, svc: CatalogService) -> None:
    for name in ("type", "name", "description"):
        if name in data:
            value = str_field(data, name, required=name == "type", max_len=255, nullable=name != "type")
            setattr(svc, name, value or "")
    enabled = bool_field(data, "enabled")
    if enabled is not None:
        svc.enabled = enabled


@bp.get("/v3/services")
@enforce("admin_api", "identity:list_services")
def list_services():
    return filtered_list(CatalogService, service_body, "services", ("type", "name"),
                         (CatalogService.type, CatalogService.id), enabled=False)


@bp.post("/v3/services")
@enforce("admin_api", "identity:create_service")
@body_schema(CatalogServiceCreateSchema, root="service")
def create_service(_loaded: dict):
    data = json_body("service")
    if "type" not in data:
        raise ApiError(400, "Invalid input for field 'type': 'type' is a required property.")
    return created("service", lambda _s: CatalogService(id=uuid.uuid4().hex, name="", description="", enabled=True),
                   _service_fields, data, service_body)


@bp.get("/v3/services/<service_id>")
@enforce("admin_api", "identity:get_service")
def show_service(service_id):
    return shown(CatalogService, service_id, "service", service_body)


@bp.patch("/v3/services/<service_id>")
@enforce("admin_api", "identity:update_service")
@body_schema(CatalogServiceUpdateSchema, root="service")
def update_service(_loaded: dict, service_id):
    return updated(CatalogService, service_id, "service", _service_fields, json_body("service"), service_body)


@bp.delete("/v3/services/<service_id>")
@enforce("admin_api", "identity:delete_service")
def delete_service(service_id):
    with db.write_session() as s:
        svc = get_or_404(s, CatalogService, service_id, "service")
        s.execute(delete(Endpoint).where(Endpoint.service_id == service_id))  # Keystone deletes them with it
        s.delete(svc)
    return "", 204


# --- endpoints --------------------------------------------------------------------------------------------------------

def endpoint_body(ep: Endpoint) -> dict:
    return {"id": ep.id, "interface": ep.interface, "region_id": ep.region_id, "region": ep.region_id,
            "service_id": ep.service_id, "url": ep.url, "enabled": ep.enabled,
            "links": {"self": v3_url(f"/endpoints/{ep.id}")}}


def _endpoint_fields(s, data: dict, ep: Endpoint) -> None:
    if "interface" in data:
        if data["interface"] not in INTERFACES:
            raise ApiError(400, f"Invalid input for field 'interface': {data['interface']!r} is not one of "
                                f"{list(INTERFACES)}.")
        ep.interface = data["interface"]
    if "url" in data:
        url = str_field(data, "url", required=True, max_len=2048)
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            raise ApiError(400, f"Invalid input for field 'url': {url!r} is not a valid URL.")
        ep.url = url
    if "service_id" in data:
        service_id = str_field(data, "service_id", required=True, max_len=64)
        if s.get(CatalogService, service_id) is None:
            raise _validation("endpoint service_id", "service table")
        ep.service_id = service_id
    region_id = data.get("region_id", data.get("region")) if "region_id" in data or "region" in data else ...
    if region_id is not ...:
        if region_id is not None and not isinstance(region_id, str):
            raise ApiError(400, "Invalid input for field 'region_id': expected a string or null.")
        if region_id is not None and s.get(Region, region_id) is None:
            if "region_id" in data:
                raise _validation("endpoint region_id", "region table")
            s.add(Region(id=region_id, description="", parent_region_id=None))  # legacy 'region': created
            s.flush()
        ep.region_id = region_id
    enabled = bool_field(data, "enabled")
    if enabled is not None:
        ep.enabled = enabled


@bp.get("/v3/endpoints")
@enforce("admin_api", "identity:list_endpoints")
def list_endpoints():
    return filtered_list(Endpoint, endpoint_body, "endpoints", ("interface", "service_id", "region_id"),
                         (Endpoint.service_id, Endpoint.interface, Endpoint.id))


@bp.post("/v3/endpoints")
@enforce("admin_api", "identity:create_endpoint")
@body_schema(EndpointCreateSchema, root="endpoint")
def create_endpoint(_loaded: dict):
    data = json_body("endpoint")
    for name in ("service_id", "interface", "url"):
        if name not in data:
            raise ApiError(400, f"Invalid input for field '{name}': '{name}' is a required property.")
    return created("endpoint", lambda _s: Endpoint(id=uuid.uuid4().hex, enabled=True, region_id=None),
                   _endpoint_fields, data, endpoint_body)


@bp.get("/v3/endpoints/<endpoint_id>")
@enforce("admin_api", "identity:get_endpoint")
def show_endpoint(endpoint_id):
    return shown(Endpoint, endpoint_id, "endpoint", endpoint_body)


@bp.patch("/v3/endpoints/<endpoint_id>")
@enforce("admin_api", "identity:update_endpoint")
@body_schema(EndpointUpdateSchema, root="endpoint")
def update_endpoint(_loaded: dict, endpoint_id):
    return updated(Endpoint, endpoint_id, "endpoint", _endpoint_fields, json_body("endpoint"), endpoint_body)


@bp.delete("/v3/endpoints/<endpoint_id>")
@enforce("admin_api", "identity:delete_endpoint")
def delete_endpoint(endpoint_id):
    with db.write_session() as s:
        s.delete(get_or_404(s, Endpoint, endpoint_id, "endpoint"))
    return "", 204


# --- regions ----------------------------------------------------------------------------------------------------------

def region_body(r: Region) -> dict:
    return {"id": r.id, "description": r.description, "parent_region_id": r.parent_region_id,
            "links": {"self": v3_url(f"/regions/{r.id}")}}


def _region_fields(s, data: dict, region: Region) -> None:
    if "description" in data:
        region.description = str_field(data, "description", max_len=255, nullable=True) or ""
    if "parent_region_id" in data:
        parent = data["parent_region_id"]
        if parent is not None:
            if not isinstance(parent, str):
                raise ApiError(400, "Invalid input for field 'parent_region_id': expected a string or null.")
            get_or_404(s, Region, parent, "region")
            ancestor = parent
            while ancestor is not None:  # Keystone's CircularRegionHierarchyError
                if ancestor == region.id:
                    raise ApiError(400, f"The specified parent region {parent} would create a circular region "
                                        "hierarchy.")
                ancestor = s.get(Region, ancestor).parent_region_id
        region.parent_region_id = parent


def _create_region(region_id: str | None, data: dict):
    if region_id is not None and (not region_id or len(region_id) > 255):
        raise ApiError(400, "Invalid input for field 'id': expected a string of at most 255 characters.")
    region_id = region_id or uuid.uuid4().hex

    def new_region(s) -> Region:
        if s.get(Region, region_id) is not None:
            raise ApiError(409, f"Conflict occurred attempting to store region - Duplicate ID, {region_id}.")
        return Region(id=region_id, description="", parent_region_id=None)
    return created("region", new_region, _region_fields, data, region_body)


@bp.get("/v3/regions")
@enforce("authenticated", "identity:list_regions")
def list_regions():
    return filtered_list(Region, region_body, "regions", ("parent_region_id",), (Region.id,), enabled=False)


@bp.post("/v3/regions")
@enforce("admin_api", "identity:create_region")
@body_schema(RegionCreateSchema, root="region")
def create_region(_loaded: dict):
    data = json_body("region")
    region_id = data.get("id")
    if region_id is not None and not isinstance(region_id, str):
        raise ApiError(400, "Invalid input for field 'id': expected a string.")
    return _create_region(region_id, data)


@bp.put("/v3/regions/<region_id>")
@enforce("admin_api", "identity:create_region")
@body_schema(RegionUpdateSchema, root="region")
def create_region_with_id(_loaded: dict, region_id):
    data = json_body("region")
    if data.get("id") not in (None, region_id):
        raise ApiError(400, "The region id in the body does not match the one in the URL.")
    return _create_region(region_id, data)


@bp.get("/v3/regions/<region_id>")
@enforce("authenticated", "identity:get_region")
def show_region(region_id):
    return shown(Region, region_id, "region", region_body)


@bp.patch("/v3/regions/<region_id>")
@enforce("admin_api", "identity:update_region")
@body_schema(RegionUpdateSchema, root="region")
def update_region(_loaded: dict, region_id):
    return updated(Region, region_id, "region", _region_fields, json_body("region"), region_body)


def _subtree(s, region_id: str) -> list[str]:
    out, todo = [], [region_id]
    while todo:
        current_id = todo.pop()
        out.append(current_id)
        todo.extend(s.scalars(select(Region.id).where(Region.parent_region_id == current_id)))
    return out


@bp.delete("/v3/regions/<region_id>")
@enforce("admin_api", "identity:delete_region")
def delete_region(region_id):
    with db.write_session() as s:
        get_or_404(s, Region, region_id, "region")
        ids = _subtree(s, region_id)
        if s.scalar(select(Endpoint.id).where(Endpoint.region_id.in_(ids)).limit(1)) is not None:
            raise ApiError(403, f"Unable to delete region {region_id} because it or its child regions have "
                                "associated endpoints.")
        s.execute(delete(Region).where(Region.id.in_(ids)))
    return "", 204
