"""Image actions and tags (Glance v2): ``POST /v2/images/{id}/actions/deactivate`` and ``reactivate`` (the owner
project's members or an admin, Glance's ``deactivate``/``reactivate`` rules; a deactivated image's data may be
downloaded by admins only and Nova refuses to boot it), ``PUT``/``DELETE /v2/images/{id}/tags/{tag}``."""
from __future__ import annotations

from flask import Blueprint
from sqlalchemy import update

from app.image.common import load_for_write
from app.policy import enforce, register
from core import db
from core.errors import ApiError
from core.models import Image, utcnow

bp = Blueprint("image_actions", __name__)

for _rule in ("deactivate", "reactivate", "modify_image"):
    register(_rule, "project_member_api")

TAG_LIMIT = 128  # Glance's image_tag_quota
# action: (the status it leaves, the status it starts from)
_TRANSITIONS = {"deactivate": ("deactivated", "active"), "reactivate": ("active", "deactivated")}


def _transition(image_id: str, action: str) -> tuple[str, int]:
    target, source = _TRANSITIONS[action]
    with db.write_session() as s:
        img = load_for_write(s, image_id, name=action)
        if img.status == target:
            return "", 204  # already there: Glance's no-op
        if img.status != source:
            raise ApiError(403, f"Not allowed to {action} image in status '{img.status}'")
        done = s.execute(update(Image).where(Image.id == image_id, Image.status == source)
                         .values(status=target, updated_at=utcnow())).rowcount
        if not done:
            raise ApiError(409, f"Image {image_id} changed status while it was being {action}d.")
    return "", 204


@bp.post("/v2/images/<image_id>/actions/deactivate")
@enforce("authenticated")
def deactivate(image_id):
    return _transition(image_id, "deactivate")


@bp.post("/v2/images/<image_id>/actions/reactivate")
@enforce("authenticated")
def reactivate(image_id):
    return _transition(image_id, "reactivate")


@bp.put("/v2/images/<image_id>/tags/<path:tag>")
@enforce("authenticated")
def add_tag(image_id, tag):
    if not 0 < len(tag) <= 255:
        raise ApiError(400, f"Could not update image: Invalid tag '{tag}': at most 255 characters.")
    with db.write_session() as s:
        img = load_for_write(s, image_id, name="modify_image")
        tags = list(img.tags or [])
        if tag not in tags:
            if len(tags) >= TAG_LIMIT:
                raise ApiError(413, f"Image tag limit exceeded for image {image_id}: Maximum number of tags "
                                    f"exceeded. Allowed: {TAG_LIMIT}:")
            img.tags = [*tags, tag]
            img.updated_at = utcnow()
    return "", 204


@bp.delete("/v2/images/<image_id>/tags/<path:tag>")
@enforce("authenticated")
def delete_tag(image_id, tag):
    with db.write_session() as s:
        img = load_for_write(s, image_id, name="modify_image")
        tags = list(img.tags or [])
        if tag not in tags:
            raise ApiError(404, "The resource could not be found.")
        img.tags = [t for t in tags if t != tag]
        img.updated_at = utcnow()
    return "", 204
