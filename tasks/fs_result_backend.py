"""Celery's file:// result backend with atomic result files.

Upstream rewrites a result file in place (truncate, then write). A client polling for the result can read the
first part of the old content (the STARTED state) and the tail of the new one (SUCCESS) in one read, and fails
with "Extra data" (seen under 200 concurrent server creates). Here each write goes to a temporary file that is
renamed over the result: readers see one whole document, old or new.
"""
from __future__ import annotations

import os
import uuid

from celery.backends.filesystem import FilesystemBackend
from kombu.utils.encoding import ensure_bytes


class AtomicFilesystemBackend(FilesystemBackend):
    def set(self, key, value) -> None:
        final = os.fsencode(self._filename(key))  # Celery passes the path and keys as bytes
        tmp = final + f".{uuid.uuid4().hex}.tmp".encode()
        with self.open(tmp, "wb") as out:
            out.write(ensure_bytes(value))
        os.replace(tmp, final)
