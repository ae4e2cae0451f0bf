"""Interoperable image import (Glance's api_image_import task), Flask-free: ``glance-direct`` takes the data
staged by ``PUT /v2/images/{id}/stage``; ``web-download`` fetches a URL, but only from the hosts the operator
allowed (setting ``image_import_allowed_hosts``; empty: none), redirects included. While the task runs the image
is ``importing`` and carries Glance's ``os_glance_import_task`` and ``os_glance_importing_to_stores``; success
makes it ``active``, failure puts it back to ``queued`` with ``os_glance_failed_import``."""
from __future__ import annotations

import datetime as dt
import logging
import urllib.error
import urllib.request
from typing import BinaryIO
from urllib.parse import urlparse

from sqlalchemy import update

from core import db, image_store
from core.models import Image, ImageTask, utcnow
from core.settings import get_settings

LOG = logging.getLogger(__name__)
STORE = "file"  # the one store (GET /v2/info/stores)
TASK_TTL = dt.timedelta(hours=48)  # Glance's task_time_to_live
FETCH_TIMEOUT = 30.0
METHODS = ("glance-direct", "web-download")


def uri_allowed(uri: str, allowed_hosts: str | None = None) -> bool:
    """Glance's validate_import_uri with an allow-list of hosts that is empty unless configured: http(s) only,
    the host listed, and its port the one listed (80 or 443 for a bare host name)."""
    allowed = {h.strip().lower() for h in (get_settings().image_import_allowed_hosts if allowed_hosts is None
                                           else allowed_hosts).split(",") if h.strip()}
    try:
        parsed = urlparse(uri)
        port = parsed.port
    except (ValueError, AttributeError, TypeError):
        return False
    host = (parsed.hostname or "").lower().rstrip(".")
    if parsed.scheme not in ("http", "https") or not host:
        return False
    if port is None:
        return host in allowed
    return f"{host}:{port}" in allowed or (port in (80, 443) and host in allowed)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is followed only to an allowed URL (else the allow-list could be walked around)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not uri_allowed(newurl):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl} does not pass filtering", headers,
                                         fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_uri(uri: str) -> BinaryIO:
    opener = urllib.request.build_opener(_CheckedRedirects)
    return opener.open(uri, timeout=FETCH_TIMEOUT)  # noqa: S310 (scheme and host checked by uri_allowed)


def _finish_task(task_id: str, status: str, message: str = "", result: dict | None = None) -> None:
    now = utcnow()
    with db.write_session() as s:
        s.execute(update(ImageTask).where(ImageTask.id == task_id).values(
            status=status, message=message, result=result, updated_at=now, expires_at=now + TASK_TTL))


def _set_image(image_id: str, task_id: str, expected: str, **values) -> bool:
    """Compare-and-swap the image out of ``expected`` while this task holds its import lock; the lock and the
    in-progress store list are dropped, other properties kept."""
    with db.write_session() as s:
        img = s.get(Image, image_id)
        if img is None or img.status != expected or (img.properties or {}).get("os_glance_import_task") != task_id:
            return False
        props = {k: v for k, v in (img.properties or {}).items() if k != "os_glance_import_task"}
        props["os_glance_importing_to_stores"] = ""
        props.update(values.pop("properties", {}))
        s.execute(update(Image).where(Image.id == image_id, Image.status == expected).values(
            properties=props, updated_at=utcnow(), **values))
        return True


def run(task_id: str) -> None:
    """Carry out import task ``task_id``; never raises (the task and the image record the outcome)."""
    with db.read_session() as s:
        task = s.get(ImageTask, task_id)
        image_id, method = task.image_id, task.input["import_req"]["method"]
    try:
        if method["name"] == "glance-direct":
            source = image_store.staged_path(image_id).open("rb")
        else:
            source = _open_uri(method["uri"])
        with source:
            size, md5_hex, sha256_hex = image_store.write_stream(image_id, source, get_settings().max_image_size)
    except Exception as exc:  # noqa: BLE001 - any failure of the source or the store fails the task
        LOG.warning("import task %s of image %s failed: %s", task_id, image_id, exc)
        message = (f"Image exceeds the storage quota: the maximum is {get_settings().max_image_size} bytes."
                   if isinstance(exc, image_store.ImageTooLarge) else f"{type(exc).__name__}: {exc}")
        _set_image(image_id, task_id, "importing", status="queued", size=None,
                   properties={"os_glance_failed_import": STORE})
        _finish_task(task_id, "failure", message)
        return
    if not _set_image(image_id, task_id, "importing", status="active", size=size, checksum=md5_hex,
                      os_hash_algo="sha256", os_hash_value=sha256_hex, properties={"os_glance_failed_import": ""}):
        image_store.delete(image_id)  # deleted (or changed) while importing
        _finish_task(task_id, "failure", f"Image {image_id} was deleted or changed during the import.")
        return
    image_store.delete_staged(image_id)
    _finish_task(task_id, "success", result={"image_id": image_id})
