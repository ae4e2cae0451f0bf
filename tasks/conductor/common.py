"""What the conductor's modules share: the ``rpc`` decorator of API-facing calls, the instance checks those calls
make before a state change, and the snapshot image's completion (createImage and shelve).

The API calls an ``rpc`` task through tasks/messaging/rpc.py and waits for ``{"ok": ...}`` or
``{"error": {"code": .., "message": ..}}``; a state change is a CAS on the expected task_state (core/writes).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update

from core import image_store
from core.db import write_session
from core.errors import ConductorError
from core.models import Image, Instance, utcnow
from core.settings import get_settings
from core.writes.instances import get_instance
from drivers import supports
from tasks.messaging.celery_app import celery
from tasks.messaging.transient import db_errors

LOG = logging.getLogger(__name__)


def rpc(name: str, *, session: bool = True) -> Callable:
    """Register ``fn`` as the API-facing call ``stratus.conductor.<name>``: its result is the ``{"ok": ...}``
    reply, a ConductorError the ``{"error": ...}`` one (a domain error, not a task failure), an unavailable
    database a 503 reply.

    With ``session`` (the default) ``fn`` runs in one write transaction, given as its first argument and
    committed before the reply. A call that publishes a canvas once its rows are committed opens its own sessions
    (``session=False``)."""
    def wrap(fn: Callable) -> Any:
        # No automatic retries: the API is waiting, and answers 503 with Retry-After instead.
        @celery.task(name=f"stratus.conductor.{name}", acks_late=False, autoretry_for=())
        @functools.wraps(fn)
        def task(*args: Any) -> dict:
            try:
                if not session:
                    return {"ok": fn(*args)}
                with write_session() as s:
                    result = fn(s, *args)
                return {"ok": result}
            except ConductorError as exc:
                error = {"code": exc.code, "message": exc.message}
                if exc.error_code:
                    error["error_code"] = exc.error_code
                return {"error": error}
            except db_errors():
                LOG.exception("database unavailable in %s", name)
                return {"error": {"code": 503, "message": "The database is temporarily unavailable."}}
        return task
    return wrap


# --- checks before a state change ----------------------------------------------------------------------------------

_MIGRATION_CALLS = ("migrate_disk_and_power_off", "finish_migration", "finish_revert_migration")
# Optional driver methods each action needs (drivers/base.py); without them the API answers 409 up front.
_DRIVER_CALLS = {"rescue": ("rescue",), "unrescue": ("unrescue",), "snapshot": ("snapshot",), "backup": ("snapshot",),
                 "trigger_crash_dump": ("trigger_crash_dump",), "resize": _MIGRATION_CALLS,
                 "migrate": _MIGRATION_CALLS, "live_migrate": ("live_migrate",),
                 "live_migration_abort": ("live_migration_abort",),
                 "live_migration_force_complete": ("live_migration_force_complete",)}


def require_driver(action: str, api_name: str) -> None:
    name = get_settings().compute_driver
    if any(not supports(name, call) for call in _DRIVER_CALLS.get(action, ())):
        raise ConductorError(409, f"The {name} compute driver does not support {api_name}.")


def invalid_state(action: str, uuid: str, attr: str, state: Any) -> ConductorError:
    """Nova's raise_http_conflict_for_instance_invalid_state message."""
    return ConductorError(409, f"Cannot '{action}' instance {uuid} while it is in {attr} {state}")


def locked_instance(s, uuid: str) -> Instance:
    """The live instance, locked for the transaction; 404 when it is gone."""
    inst = get_instance(s, uuid, lock=True)
    if inst is None or inst.deleted:
        raise ConductorError(404, f"Instance {uuid} could not be found.")
    return inst


def check_state(inst: Instance, name: str, vm_states: tuple) -> None:
    """409 unless the instance is in one of ``vm_states`` with no task running."""
    if inst.vm_state not in vm_states:
        raise invalid_state(name, inst.uuid, "vm_state", inst.vm_state)
    if inst.task_state is not None:
        raise invalid_state(name, inst.uuid, "task_state", inst.task_state)


# --- snapshot images -----------------------------------------------------------------------------------------------

def finish_snapshot_image(s, ctx: dict) -> bool:
    """The compute step uploaded the snapshot's data through the Image API (PUT .../file), which made the image
    active. False when the image was deleted meanwhile (its data, if the upload raced the delete, is removed)."""
    image_id = ctx["image_id"]
    status = s.scalar(select(Image.status).where(Image.id == image_id))
    if status is None:
        image_store.delete(image_id)
    return status == "active"


def drop_unfinished_snapshots(s, inst: Instance) -> list[str]:
    """The instance is deleted: the images its createImage, createBackup or shelve had not finished (queued or
    saving) would stay so for ever; Nova deletes them ("Instance disappeared during snapshot"). Their ids: the
    caller removes their data after the commit (a step still writing it finds the image gone and drops it)."""
    rows = s.execute(select(Image.id, Image.properties).where(Image.owner == inst.project_id,
                                                             Image.status.in_(("queued", "saving")))).all()
    ids = [r.id for r in rows if (r.properties or {}).get("instance_uuid") == inst.uuid
           and (r.properties or {}).get("image_type") in ("snapshot", "backup")]
    if ids:
        s.execute(delete(Image).where(Image.id.in_(ids), Image.status.in_(("queued", "saving"))))
    return ids


def rotate_backups(s, instance_uuid: str, backup_type: str, rotation: int) -> list[str]:
    """Nova's _rotate_backups: of the instance's backups of ``backup_type`` (newest first, by created_at, which
    has whole seconds on MariaDB as Glance's has on MySQL), delete those beyond ``rotation``; their ids."""
    project_id = s.scalar(select(Instance.project_id).where(Instance.uuid == instance_uuid))
    rows = s.execute(select(Image.id, Image.properties, Image.protected).where(Image.owner == project_id).order_by(
        Image.created_at.desc(), Image.id.desc())).all()
    backups = [(r.id, r.protected) for r in rows if (r.properties or {}).get("image_type") == "backup"
               and (r.properties or {}).get("instance_uuid") == instance_uuid
               and (r.properties or {}).get("backup_type") == backup_type]
    excess = [image_id for image_id, protected in backups[rotation:] if not protected]  # Glance keeps those
    if excess:
        s.execute(delete(Image).where(Image.id.in_(excess)))
        for image_id in excess:
            image_store.delete(image_id)
    return excess


def snapshot_failed(ctx: dict) -> None:
    """A failed createImage or shelve leaves no image behind (Nova deletes the snapshot image it created)."""
    with write_session() as s:
        s.execute(delete(Image).where(Image.id == ctx["image_id"], Image.status.in_(("queued", "saving"))))
    image_store.delete(ctx["image_id"])
