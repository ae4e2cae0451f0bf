"""What the Image API's views share: an image's body, loading an image the caller may see (404 otherwise) or
change (403), and Glance's small shapes. Not a views module: it defines no blueprint."""
from __future__ import annotations

import uuid

from flask import Response, jsonify
from sqlalchemy.orm import Session

from app.context import current
from app.policy import check
from core import image_access
from core.errors import ApiError
from core.models import Image

# Properties Glance keeps for itself and never shows (glance/api/v2/images.py ResponseSerializer).
HIDDEN_PROPERTIES = ("os_glance_stage_host", "os_glance_hash_op_host")
# Keystone's service role: the compute hosts' credential (issue 25) reads every image and uploads snapshots.
SERVICE_ROLE = "service"


def iso(t) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except (ValueError, TypeError, AttributeError):
        return False


def json_response(resp_body, status: int = 200, headers: dict | None = None) -> Response:
    resp = jsonify(resp_body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def image_body(img: Image) -> dict:
    props = {k: v for k, v in (img.properties or {}).items() if k not in HIDDEN_PROPERTIES}
    hidden = bool(props.pop("os_hidden", False))
    body = {
        "id": img.id, "name": img.name, "status": img.status, "visibility": img.visibility,
        "protected": bool(img.protected), "os_hidden": hidden, "checksum": img.checksum,
        "os_hash_algo": img.os_hash_algo, "os_hash_value": img.os_hash_value, "size": img.size,
        "virtual_size": None, "min_disk": img.min_disk or 0, "min_ram": img.min_ram or 0,
        "disk_format": img.disk_format, "container_format": img.container_format, "owner": img.owner,
        "created_at": iso(img.created_at), "updated_at": iso(img.updated_at), "tags": list(img.tags or []),
        "self": f"/v2/images/{img.id}", "file": f"/v2/images/{img.id}/file", "schema": "/v2/schemas/image",
    }
    for key, value in props.items():
        body.setdefault(key, value)
    return body


def readable(img: Image, member_status: str | None) -> bool:
    """Whether the caller sees ``img``: its project owns it or is a member of it (with a reader role), it is
    public or community, or the caller is an admin."""
    ctx = current()
    if SERVICE_ROLE in ctx.roles:  # a compute host's credential: Nova boots any image it is asked to
        return True
    if img.visibility not in ("public", "community") and not ctx.is_admin and not ctx.is_reader:
        return False
    return image_access.visible(img.visibility, img.owner, ctx.project_id, ctx.is_admin, member_status)


def load(session: Session, image_id: str) -> Image:
    """The image if the caller may see it, else 404 (whether or not it exists)."""
    img = session.get(Image, image_id) if is_uuid(image_id) else None
    if img is None or not readable(img, image_access.member_status(session, img.id, current().project_id)
                                   if img.visibility == "shared" else None):
        raise ApiError(404, f"No image found with ID {image_id}")
    return img


def load_for_write(session: Session, image_id: str, name: str | None = None) -> Image:
    """The image if the caller may change it: 404 if unseen, 403 if seen but owned by another project."""
    check("authenticated")
    img = load(session, image_id)
    check("project_member_api", img.owner, name=name)
    return img


def load_for_upload(session: Session, image_id: str) -> Image:
    """load_for_write, or for a compute host's service credential the image of a snapshot (createImage,
    createBackup, shelve: the compute uploads the data of the image the Compute API created for it)."""
    if SERVICE_ROLE in current().roles:
        check("admin_or_service")
        img = load(session, image_id)
        props = img.properties or {}
        if props.get("image_type") in ("snapshot", "backup") and props.get("instance_uuid"):
            return img
        # a cold migration's transfer image (tasks/conductor/moves.py): the source host uploads the guest's disk
        if props.get("image_type") == image_access.MIGRATION_IMAGE_TYPE and props.get("migration_uuid") \
                and props.get("instance_uuid") and img.visibility == "private":
            return img
    return load_for_write(session, image_id)
