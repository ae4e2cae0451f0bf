"""Who may read and change an image (the Image service's rules, also used by the Compute API's image proxy):
public and community images are readable by everyone; private and shared ones by the owner project (with a
reader role) and admins; others are 404 whether or not they exist. Changing one needs a member of its owner."""
from __future__ import annotations

import uuid

from app.context import current
from app.policy import check
from core.errors import ApiError
from core.models import Image


def is_uuid(value: object) -> bool:
    try:
        uuid.UUID(value)  # type: ignore[arg-type]
        return True
    except (ValueError, TypeError, AttributeError):
        return False


def readable(img: Image) -> bool:
    ctx = current()
    if ctx.is_admin or img.visibility in ("public", "community"):
        return True
    return ctx.project_id is not None and img.owner == ctx.project_id and ctx.is_reader


def load_visible(session, image_id: str) -> Image:
    """The image if the caller may see it, else 404 (whether or not it exists)."""
    img = session.get(Image, image_id) if is_uuid(image_id) else None
    if img is None or not readable(img):
        raise ApiError(404, f"No image found with ID {image_id}")
    return img


def load_writable(session, image_id: str) -> Image:
    check("authenticated")
    img = load_visible(session, image_id)
    check("project_member_api", img.owner)  # 403 when visible but owned by another project
    return img
