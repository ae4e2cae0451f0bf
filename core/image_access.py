"""Who may see and use an image, as Glance decides it (glance/db/utils.py ``is_image_visible``) for the Image API
and for Nova's boot path: public and community images are everyone's; private ones their owner's; a shared image
is also visible, by its ID, to every project it has a member row for, whatever the member's status (Glance:
"When an image is shared, the member is given immediate access to the image"; the status only decides whether it
appears in the member's image list). Admins see everything. Flask-free."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import ImageMember

MEMBER_STATUSES = ("pending", "accepted", "rejected")
# image_type of the hidden image a cold migration's disk travels in between compute hosts (tasks/conductor/transfer)
MIGRATION_IMAGE_TYPE = "migration"


def member_status(s: Session, image_id: str, project_id: str | None) -> str | None:
    """The member status of ``project_id`` on the image, or None when it is not a member."""
    if not project_id:
        return None
    return s.scalar(select(ImageMember.status).where(ImageMember.image_id == image_id,
                                                     ImageMember.member == project_id))


def memberships(s: Session, project_id: str | None) -> dict[str, str]:
    """Every image shared with ``project_id``: image id -> member status."""
    if not project_id:
        return {}
    rows = s.execute(select(ImageMember.image_id, ImageMember.status).where(ImageMember.member == project_id))
    return {image_id: status for image_id, status in rows}


def visible(visibility: str, owner: str | None, project_id: str | None, is_admin: bool,
            status: str | None) -> bool:
    """Whether a caller of ``project_id`` sees an image (by its ID); ``status`` is the caller's member status."""
    if is_admin or visibility in ("public", "community"):
        return True
    if project_id is not None and owner == project_id:
        return True
    return visibility == "shared" and status is not None


def listed(visibility: str, owner: str | None, project_id: str | None, status: str | None,
           member_filter: str = "accepted") -> bool:
    """Whether a visible image of another project's sharing belongs in the caller's list: shared images only
    with the ``member_status`` asked for (Glance's default: accepted; ``all``: any)."""
    if visibility != "shared" or owner == project_id or status is None:
        return True
    return member_filter == "all" or status == member_filter
