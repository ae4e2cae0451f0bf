"""The Identity API's response bodies (Keystone's shapes): links under /identity/v3, the default domain, projects,
users, roles, collections, and the service catalog a project-scoped token carries."""
from __future__ import annotations

import uuid

from flask import Response, jsonify

from app.identity.service import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME
from core.models import Project, Role, User
from core.settings import get_settings

REGION = "RegionOne"


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


def _endpoint_id(service_type: str, interface: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"stratus:{service_type}:{interface}").hex


def service_catalog() -> list[dict]:
    base = base_url()
    services = [("identity", "keystone", f"{base}/identity"),
                ("compute", "nova", f"{base}/v2.1"),
                ("image", "glance", f"{base}/image"),
                ("placement", "placement", f"{base}/placement")]
    catalog = []
    for stype, name, url in services:
        catalog.append({
            "id": uuid.uuid5(uuid.NAMESPACE_URL, f"stratus:{stype}").hex, "type": stype, "name": name,
            "endpoints": [{"id": _endpoint_id(stype, iface), "interface": iface, "region": REGION,
                           "region_id": REGION, "url": url} for iface in ("public", "internal", "admin")],
        })
    return catalog
