"""The hidden image a cold migration or resize to another host carries the guest's disk in (issue 25: compute hosts
share no disk), as Nova's cross-cell resize does with a snapshot. The conductor creates it with the Migration row
(only for drivers that declare ``moves_disk_through_image_api``): owned by the service project, private (no tenant
lists or reads it), queued; the source host's service credential uploads the stopped guest's disk into it (the
Image API's upload policy admits it by its properties), the destination downloads it through its image cache. The
conductor deletes it when the move ends: the destination finished, or the move failed, was confirmed or reverted."""
from __future__ import annotations

from sqlalchemy import delete, select

from core import image_store
from core.image_access import MIGRATION_IMAGE_TYPE
from core.models import Image, Project
from core.settings import get_settings
from drivers import capability


def needed(action: str, source: str | None, dest: str) -> bool:
    """A resize or cold migration to another host, with a driver whose disks travel through the Image API."""
    return action in ("resize", "migrate") and bool(source) and dest != source and \
        capability(get_settings().compute_driver, "moves_disk_through_image_api")


def _name(migration_uuid: str) -> str:
    return f"migration-{migration_uuid}"


def _service_project(s) -> str | None:
    return s.scalar(select(Project.id).where(Project.domain_id == "default",
                                             Project.name == get_settings().service_project))


def create(s, instance_uuid: str, migration_uuid: str) -> str:
    """The transfer image's id (a queued, private image of the service project), in the caller's transaction."""
    image = Image(name=_name(migration_uuid), status="queued", disk_format="qcow2", container_format="bare",
                  visibility="private", owner=_service_project(s),
                  properties={"image_type": MIGRATION_IMAGE_TYPE, "instance_uuid": instance_uuid,
                              "migration_uuid": migration_uuid})
    s.add(image)
    s.flush()
    return image.id


def drop(s, migration_uuid: str | None) -> list[str]:
    """Delete the migration's transfer image rows; their ids (the caller removes the data after the commit:
    ``remove_data``). An upload racing this finds the image gone (404) and the step fails."""
    if not migration_uuid:
        return []
    owner = _service_project(s)
    rows = s.execute(select(Image.id, Image.properties).where(
        Image.name == _name(migration_uuid), Image.owner == owner if owner else Image.owner.is_(None))).all()
    ids = [r.id for r in rows if (r.properties or {}).get("image_type") == MIGRATION_IMAGE_TYPE
           and (r.properties or {}).get("migration_uuid") == migration_uuid]
    if ids:
        s.execute(delete(Image).where(Image.id.in_(ids)))
    return ids


def remove_data(image_ids: list[str]) -> None:
    for image_id in image_ids:
        image_store.delete(image_id)
