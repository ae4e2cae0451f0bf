"""Celery's file result backend with atomic writes (the embedded default, ``file://<state>/results``).

Upstream writes a result file in place (open with O_TRUNC, then write), while the API polls the same file every
5 ms for an RPC reply (tasks/messaging/rpc.py): a read between the truncation and the end of the write sees an empty or
partial file. Here each result is written to a hidden temporary name and renamed into place, which is atomic on
POSIX (as tasks/messaging/fs_transport.py does for messages): a reader sees the whole previous value or the whole new one.
"""
from __future__ import annotations

import os
import uuid

from celery.backends.filesystem import FilesystemBackend
from kombu.utils.encoding import ensure_bytes


class AtomicFilesystemBackend(FilesystemBackend):
    def set(self, key, value):
        final = self._filename(key)
        directory, _, name = final.rpartition(self.sep)
        tmp = self.sep.join((directory, b"." + name + b"." + uuid.uuid4().hex.encode() + b".tmp"))
        with self.open(tmp, "wb") as outfile:
            outfile.write(ensure_bytes(value))
        os.replace(tmp, final)
