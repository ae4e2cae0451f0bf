"""What the Image service gives the Compute API for a snapshot (createImage, shelve), as Glance does for Nova: a
queued private image that the compute host's upload fills, and its removal when the action is refused. The
``images`` table is the Image service's own (docs/architecture-notes.md, "Who writes which tables"); the compute
tables stay the conductor's."""
from __future__ import annotations

import uuid as uuidlib

from core.db import write_session
from core.models import Image, Instance, utcnow


def new_snapshot_image(inst: Instance, name: str, metadata: dict, user_id: str, backup_type: str | None = None) -> str:
    """A queued private image for a snapshot of ``inst`` requested by ``user_id`` (a backup of ``backup_type``
    with one); its id."""
    image_id = str(uuidlib.uuid4())
    now = utcnow()
    with write_session() as s:
        base = s.get(Image, inst.image_ref)
        inherited = {k: v for k, v in ((base.properties or {}) if base else {}).items()
                     if k not in ("instance_uuid", "image_type", "base_image_ref", "backup_type")}
        s.add(Image(id=image_id, name=name, status="queued", visibility="private", protected=False,
                    owner=inst.project_id, disk_format=base.disk_format if base else "raw",
                    container_format=base.container_format if base else "bare",
                    min_disk=(inst.flavor_snapshot or {}).get("disk") or 0, min_ram=base.min_ram if base else 0,
                    properties={**inherited, **metadata, "instance_uuid": inst.uuid, "image_type": "snapshot",
                                "base_image_ref": inst.image_ref, "user_id": user_id,
                                **({"image_type": "backup", "backup_type": backup_type} if backup_type else {})},
                    tags=[], created_at=now, updated_at=now))
    return image_id


def drop_queued_image(image_id: str) -> None:
    """The snapshot's action was refused: its image never gets data."""
    with write_session() as s:
        s.query(Image).filter(Image.id == image_id, Image.status == "queued").delete()
