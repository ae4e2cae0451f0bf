"""Identity helpers: password hashing and idempotent bootstrap functions (called by `stratus bootstrap`).

Every ``ensure_*``/``grant`` function takes an open write session, flushes (so ids are set) and never commits:
the caller owns the transaction.
"""
from __future__ import annotations

import base64
import hashlib

import bcrypt
from sqlalchemy import select

from core.models import CatalogService, Endpoint, Project, Region, Role, RoleAssignment, SystemRoleAssignment, User
from core.settings import get_settings

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
DEFAULT_REGION = "RegionOne"
INTERFACES = ("public", "internal", "admin")
# Keystone's (2024.2) bootstrap roles; admin implies manager implies member implies reader, service stands apart.
DEFAULT_ROLES = ("admin", "manager", "member", "reader", "service")
# A valid hash of a random string, checked when the user does not exist so timing does not reveal user names.
_DUMMY_HASH: bytes | None = None


def _password_bytes(password: str) -> bytes:
    raw = password.encode("utf-8")
    # bcrypt only reads 72 bytes (and bcrypt>=5 refuses more): longer passwords are pre-hashed.
    if len(raw) > 72:
        raw = base64.b64encode(hashlib.sha256(raw).digest())
    return raw


def _salt() -> bytes:
    # The cost is the settings' (password_hash_rounds); a check uses the cost stored in each hash.
    return bcrypt.gensalt(rounds=get_settings().password_hash_rounds)


def hash_password(password: str) -> str:
    return bcrypt.hashpw(_password_bytes(password), _salt()).decode("ascii")


def check_password(password: str, password_hash: str | None) -> bool:
    global _DUMMY_HASH
    if not password_hash:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = bcrypt.hashpw(b"stratus-dummy", _salt())
        bcrypt.checkpw(b"not-the-password", _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(_password_bytes(password), password_hash.encode("ascii"))
    except ValueError:
        return False


def ensure_role(session, name: str) -> Role:
    role = session.scalar(select(Role).where(Role.name == name))
    if role is None:
        role = Role(name=name)
        session.add(role)
        session.flush()
    return role


def ensure_project(session, name: str, description: str = "") -> Project:
    project = session.scalar(select(Project).where(Project.domain_id == DEFAULT_DOMAIN_ID, Project.name == name))
    if project is None:
        project = Project(name=name, description=description, domain_id=DEFAULT_DOMAIN_ID, enabled=True)
        session.add(project)
        session.flush()
    return project


def ensure_user(session, name: str, password: str, default_project_id: str | None = None) -> User:
    """Create the user, or update its password (and default project, when given) if it exists."""
    user = session.scalar(select(User).where(User.domain_id == DEFAULT_DOMAIN_ID, User.name == name))
    if user is None:
        user = User(name=name, domain_id=DEFAULT_DOMAIN_ID, enabled=True, description="",
                    password_hash=hash_password(password), default_project_id=default_project_id)
        session.add(user)
    else:
        if not check_password(password, user.password_hash):
            user.password_hash = hash_password(password)
        if default_project_id is not None:
            user.default_project_id = default_project_id
    session.flush()
    return user


def grant(session, user_id: str, project_id: str, role_id: str) -> RoleAssignment:
    ra = session.get(RoleAssignment, (user_id, project_id, role_id))
    if ra is None:
        ra = RoleAssignment(user_id=user_id, project_id=project_id, role_id=role_id)
        session.add(ra)
        session.flush()
    return ra


def grant_system(session, user_id: str, role_id: str) -> SystemRoleAssignment:
    ra = session.get(SystemRoleAssignment, (user_id, role_id))
    if ra is None:
        ra = SystemRoleAssignment(user_id=user_id, role_id=role_id)
        session.add(ra)
        session.flush()
    return ra


def ensure_region(session, region_id: str = DEFAULT_REGION) -> Region:
    region = session.get(Region, region_id)
    if region is None:
        region = Region(id=region_id, description="", parent_region_id=None)
        session.add(region)
        session.flush()
    return region


def ensure_catalog_service(session, service_type: str, name: str, url: str,
                           region_id: str = DEFAULT_REGION) -> CatalogService:
    """The catalog entry ``service_type`` with a public, internal and admin endpoint on ``url`` in the region;
    an existing entry's endpoints get the URL (keystone-manage bootstrap's behaviour when URLs change)."""
    ensure_region(session, region_id)
    svc = session.scalar(select(CatalogService).where(CatalogService.type == service_type,
                                                      CatalogService.name == name))
    if svc is None:
        svc = CatalogService(type=service_type, name=name, description="", enabled=True)
        session.add(svc)
        session.flush()
    existing = {e.interface: e for e in session.scalars(
        select(Endpoint).where(Endpoint.service_id == svc.id, Endpoint.region_id == region_id))}
    for interface in INTERFACES:
        endpoint = existing.get(interface)
        if endpoint is None:
            session.add(Endpoint(service_id=svc.id, interface=interface, region_id=region_id, url=url,
                                 enabled=True))
        elif endpoint.url != url:
            endpoint.url = url
    session.flush()
    return svc


def bootstrap_catalog(session) -> None:
    """Stratus's own services at the configured public URL. Another service registers itself with one line, e.g.
    ``ensure_catalog_service(session, "placement", "placement", f"{base}/placement")``."""
    base = get_settings().public_url.rstrip("/")
    ensure_catalog_service(session, "identity", "keystone", f"{base}/identity")
    ensure_catalog_service(session, "compute", "nova", f"{base}/v2.1")
    ensure_catalog_service(session, "image", "glance", f"{base}/image")
    ensure_catalog_service(session, "placement", "placement", f"{base}/placement")
    ensure_catalog_service(session, "network", "neutron", f"{base}/networking")


def bootstrap(session, admin_password: str, admin_user: str = "admin", admin_project: str = "admin") -> User:
    """The default roles, project `admin`, user `admin` with the admin role on it and on the system (as
    `keystone-manage bootstrap` grants), and the service catalog (idempotent)."""
    roles = {name: ensure_role(session, name) for name in DEFAULT_ROLES}
    project = ensure_project(session, admin_project, "Bootstrap project for initializing the cloud.")
    ensure_project(session, "service", "Service project.")
    user = ensure_user(session, admin_user, admin_password, default_project_id=project.id)
    grant(session, user.id, project.id, roles["admin"].id)
    grant_system(session, user.id, roles["admin"].id)
    bootstrap_catalog(session)
    return user


def system_assignments(s, user_id: str | None, role_id: str | None) -> list[tuple[User, Role]]:
    """The system assignments, optionally of one user or role, as (user, role), by user and role name."""
    q = (select(User, Role).select_from(SystemRoleAssignment)
         .join(User, User.id == SystemRoleAssignment.user_id)
         .join(Role, Role.id == SystemRoleAssignment.role_id)
         .order_by(User.name, Role.name))
    if user_id is not None:
        q = q.where(SystemRoleAssignment.user_id == user_id)
    if role_id is not None:
        q = q.where(SystemRoleAssignment.role_id == role_id)
    return [(u, r) for u, r in s.execute(q)]
