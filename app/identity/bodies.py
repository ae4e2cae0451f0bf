"""The Identity API's response bodies (Keystone's shapes): links under /identity/v3, the default domain, projects,
users, roles, collections, and the service catalog a project-scoped token carries."""
from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import select

from app.identity.service import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME
from core import db
from core.models import CatalogService, Endpoint, Project, Role, User
from core.settings import get_settings


def base_url() -> str:
    return get_settings().public_url.rstrip("/")


def v3_url(path: str = "") -> str:
    return f"{base_url()}/identity/v3{path}"


def iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def domain_ref() -> dict:
    return {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}


def domain_body() -> dict:
    return {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME, "description": "The default domain",
            "enabled": True, "tags": [], "options": {}, "links": {"self": v3_url(f"/domains/{DEFAULT_DOMAIN_ID}")}}


def project_body(p: Project) -> dict:
    return {"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description or "",
            "enabled": p.enabled, "parent_id": p.domain_id, "is_domain": False, "tags": [], "options": {},
            "links": {"self": v3_url(f"/projects/{p.id}")}}


def user_body(u: User) -> dict:
    body = {"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
            "password_expires_at": None, "options": {}, "links": {"self": v3_url(f"/users/{u.id}")}}
    if u.default_project_id:
        body["default_project_id"] = u.default_project_id
    if u.email:
        body["email"] = u.email
    if u.description:
        body["description"] = u.description
    return body


def role_body(r: Role) -> dict:
    return {"id": r.id, "name": r.name, "domain_id": None, "description": None, "options": {},
            "links": {"self": v3_url(f"/roles/{r.id}")}}


def collection(key: str, items: list[dict], path: str) -> Response:
    return jsonify({key: items, "links": {"self": v3_url(path), "previous": None, "next": None}})


_URL_VARS = ("$(project_id)s", "$(tenant_id)s", "%(project_id)s", "%(tenant_id)s")


def _catalog_url(url: str, project_id: str | None) -> str | None:
    """Keystone's endpoint URL substitution of the token's project; None when the URL needs one it has not."""
    if not any(var in url for var in _URL_VARS):
        return url
    if project_id is None:
        return None
    for var in _URL_VARS:
        url = url.replace(var, project_id)
    return url


def service_catalog(project_id: str | None = None) -> list[dict]:
    """The catalog a token carries: enabled services with their enabled endpoints (services without one are
    left out, as Keystone does)."""
    with db.read_session() as s:
        rows = s.execute(select(CatalogService, Endpoint).join(Endpoint, Endpoint.service_id == CatalogService.id)
                         .where(CatalogService.enabled.is_(True), Endpoint.enabled.is_(True))
                         .order_by(CatalogService.type, CatalogService.id, Endpoint.interface)).all()
        catalog: dict[str, dict] = {}
        for svc, ep in rows:
            url = _catalog_url(ep.url, project_id)
            if url is None:
                continue
            entry = catalog.setdefault(svc.id, {"endpoints": [], "id": svc.id, "type": svc.type,
                                                "name": svc.name})
            entry["endpoints"].append({"id": ep.id, "interface": ep.interface, "region_id": ep.region_id,
                                       "url": url, "region": ep.region_id})
    return list(catalog.values())
