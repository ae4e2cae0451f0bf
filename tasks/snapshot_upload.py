"""The body of a snapshot upload to the Image API: the driver's snapshot stream, read once, with its size and
checksums counted on the way (what the conductor records on the image), and a known length where the stream has
one (Content-Length instead of a chunked body)."""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 20


class HashingReader:
    def __init__(self, raw: BinaryIO):
        self.raw, self.start = self._seekable(raw)
        self.length = self._length()
        self.rewind()

    @staticmethod
    def _seekable(raw: BinaryIO) -> tuple[BinaryIO, int]:
        try:
            return raw, raw.tell()
        except (AttributeError, OSError, io.UnsupportedOperation):  # a pipe: spool it to learn its length
            spool = tempfile.TemporaryFile()
            shutil.copyfileobj(raw, spool, CHUNK)
            spool.seek(0)
            return spool, 0

    def _length(self) -> int:
        try:
            return os.fstat(self.raw.fileno()).st_size - self.start
        except (AttributeError, OSError, io.UnsupportedOperation):
            end = self.raw.seek(0, io.SEEK_END)
            self.raw.seek(self.start)
            return end - self.start

    def rewind(self) -> None:
        """Back to the start (a request sent again after a 401)."""
        self.raw.seek(self.start)
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.raw.read(n)
        self.size += len(chunk)
        self.md5.update(chunk)
        self.sha256.update(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def __len__(self) -> int:
        return self.length
