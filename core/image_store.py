"""Local image file store: one file per image at ``<image_dir>/<image id>``.

Writes go to a temporary file in the same directory, are fsynced and renamed into place only after the size and
checksum checks pass, so a file at ``path_for(id)`` is always complete. The compute side reads images by path.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from core.settings import get_settings

CHUNK_SIZE = 1 << 16
_ID_RE = re.compile(r"^[0-9a-fA-F-]{32,36}$")


class ImageTooLarge(Exception):
    """The stream exceeded the allowed size; nothing was stored."""


class ChecksumMismatch(Exception):
    """The data's MD5 differs from the expected one; nothing was stored."""


def image_dir() -> Path:
    path = get_settings().image_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def path_for(image_id: str) -> Path:
    if not _ID_RE.match(image_id):
        raise ValueError(f"invalid image id {image_id!r}")
    return image_dir() / image_id


def staging_dir() -> Path:
    """Where interoperable import keeps staged data (Glance's node_staging_uri) until the import takes it."""
    path = get_settings().state_path / "staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def staged_path(image_id: str) -> Path:
    path_for(image_id)  # validates the id
    return staging_dir() / image_id


def write_stream(image_id: str, stream: BinaryIO, max_size: int | None = None,
                 expected_md5: str | None = None, chunk_size: int = CHUNK_SIZE, *,
                 staged: bool = False) -> tuple[int, str, str]:
    """Store ``stream`` as the image's data (``staged``: in the staging area); return (size, md5 hex, sha256 hex).

    Raises ImageTooLarge past ``max_size`` bytes and ChecksumMismatch if ``expected_md5`` (hex) differs; in both
    cases the temporary file is removed and any existing data is left untouched.
    """
    target = staged_path(image_id) if staged else path_for(image_id)
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix=f".{image_id}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = stream.read(chunk_size)
                if not chunk:
                    break
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise ImageTooLarge(f"image data exceeds {max_size} bytes")
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        md5_hex = md5.hexdigest()
        if expected_md5 is not None and expected_md5.lower() != md5_hex:
            raise ChecksumMismatch(f"checksum {md5_hex} does not match the expected {expected_md5}")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return size, md5_hex, sha256.hexdigest()


def exists(image_id: str) -> bool:
    return path_for(image_id).is_file()


def open_data(image_id: str) -> BinaryIO:
    return open(path_for(image_id), "rb")


def iter_data(fh: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the open file's chunks and close it at the end (or when the consumer stops)."""
    try:
        while True:
            chunk = fh.read(chunk_size)
            if not chunk:
                return
            yield chunk
    finally:
        fh.close()


def delete(image_id: str) -> bool:
    """Remove the image's data; True if a file was removed."""
    try:
        path_for(image_id).unlink()
        return True
    except FileNotFoundError:
        return False


def delete_staged(image_id: str) -> bool:
    """Remove the image's staged data; True if there was some."""
    try:
        staged_path(image_id).unlink()
        return True
    except FileNotFoundError:
        return False
