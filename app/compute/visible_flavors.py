"""Which flavors a caller sees (Nova): admins every flavor, others the public ones and the private ones their
project was given access to; a disabled flavor is nobody's. Flask-free."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, or_, select

from core.db import read_session
from core.errors import not_found
from core.models import Flavor, FlavorProject

if TYPE_CHECKING:
    from app.context import RequestContext


def visible_to(project_id: str | None) -> ColumnElement[bool]:
    """Public flavors, and private ones the project was given access to (Nova)."""
    granted = select(FlavorProject.flavor_id).where(FlavorProject.project_id == project_id)
    return or_(Flavor.is_public.is_(True), Flavor.id.in_(granted))


def get_flavor(flavor_id: str, ctx: RequestContext) -> Flavor:
    """The flavor, if the caller may see it; else Nova's 404."""
    q = select(Flavor).where(Flavor.flavorid == flavor_id, Flavor.disabled.is_(False))
    if not ctx.is_admin:
        q = q.where(visible_to(ctx.project_id))
    with read_session() as s:
        f = s.scalars(q).first()
    if f is None:
        raise not_found(f"Flavor {flavor_id} could not be found.")
    return f
