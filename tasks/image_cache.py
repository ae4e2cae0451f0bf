"""This compute host's image cache (``<state_dir>/image-cache/<image id>``), filled from the Image API (issue 25),
as Nova's image cache: an image is downloaded once per host, to a temporary file that is checksum-verified
(Glance's ``os_hash_algo``/``os_hash_value``, else the md5 ``checksum``) before it is renamed into place, so a
cached file is always complete and a corrupt download never stays. A per-image file lock (fcntl; a worker may run
several processes) makes concurrent builds of one image wait for one download.

Least recently used images (a hit touches the file's mtime) are removed once the cache exceeds
``image_cache_max_mb``, never one a guest's disk still uses: a disk made from the cached file by a hard link (the
fake driver's) keeps its link count above 1, and an image fetched in the last ``GRACE`` seconds is kept for the
step that asked for it. Drivers with their own copy (libvirt's ``_base``, a VMware datastore) leave it evictable.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from core.file_lock import exclusive
from core.settings import get_settings
from drivers.base import DriverError, HostLocalError
from tasks.image_service import ImageService, client

LOG = logging.getLogger(__name__)
GRACE = 60.0
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,200}$")


class ImageCorrupt(DriverError):
    """The downloaded data does not match the image's checksum; nothing was kept."""


def _hashers(meta: dict) -> list[tuple[str, "hashlib._Hash", str]]:
    """(name, hasher, expected hex) for the checksums the image's metadata gives: the multihash if its
    algorithm is known here, and the md5 ``checksum`` (older images have only that)."""
    found = []
    algo, value = meta.get("os_hash_algo"), meta.get("os_hash_value")
    if algo and value and algo in hashlib.algorithms_available:
        found.append((algo, hashlib.new(algo), value.lower()))
    if meta.get("checksum"):
        found.append(("md5", hashlib.md5(usedforsecurity=False), meta["checksum"].lower()))
    return found


class ImageCache:
    def __init__(self, directory: Path, max_bytes: int, service: Callable[[], ImageService] = client):
        self.dir = directory
        self.max_bytes = max_bytes
        self.service = service

    def path(self, image_id: str) -> Path:
        if not _ID.match(image_id):
            raise DriverError(f"invalid image id {image_id!r}")
        return self.dir / image_id

    def fetch(self, image_id: str) -> str:
        """The local path of the image's data, downloaded first when this host does not have it."""
        dest = self.path(image_id)
        if self._touch(dest):  # the common case: no lock, just mark it used
            return str(dest)
        self.dir.mkdir(parents=True, exist_ok=True)
        with exclusive(self.dir / f".{image_id}.lock"):
            if self._touch(dest):  # another build downloaded it while this one waited
                return str(dest)
            for stale in self.dir.glob(f".{image_id}.*.part"):  # a crashed download (we hold the lock)
                stale.unlink(missing_ok=True)
            size = self._download(image_id, dest)
        if size:
            self.evict(keep=image_id)
        return str(dest)

    @staticmethod
    def _touch(dest: Path) -> bool:
        """Mark the cached image used now; False when it is not cached. Eviction re-checks the time under the
        image's lock, so an image touched here is not removed under the step that asked for it."""
        try:
            os.utime(dest)
            return True
        except FileNotFoundError:
            return False

    def _download(self, image_id: str, dest: Path) -> int:
        svc = self.service()
        meta = svc.show(image_id)
        hashers = _hashers(meta)
        tmp = self.dir / f".{image_id}.{os.getpid()}.part"
        size = 0
        started = time.monotonic()
        try:
            with open(tmp, "wb") as out:
                for chunk in svc.download(image_id):
                    size += len(chunk)
                    for _, h, _ in hashers:
                        h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if meta.get("size") is not None and size != meta["size"]:
                raise ImageCorrupt(f"Image {image_id} is corrupt: {size} bytes were downloaded, the Image service "
                                   f"says {meta['size']}.")
            for name, h, expected in hashers:
                if h.hexdigest() != expected:
                    raise ImageCorrupt(f"Image {image_id} is corrupt: the {name} of the downloaded data "
                                       f"({h.hexdigest()}) does not match its checksum ({expected}).")
            if not hashers:
                LOG.warning("image %s has no checksum in the Image service; its data is not verified", image_id)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except OSError as exc:
            raise HostLocalError(f"Cannot cache image {image_id} in {self.dir}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        LOG.info("image %s downloaded: %d bytes in %.3f s", image_id, size, time.monotonic() - started)
        return size

    def entries(self) -> list[tuple[Path, os.stat_result]]:
        return [(p, p.stat()) for p in self.dir.iterdir() if not p.name.startswith(".") and p.is_file()]

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used images until the cache fits ``max_bytes``; the ids removed. Never ``keep``,
        an image a guest's disk links to, or one used within GRACE seconds."""
        if self.max_bytes <= 0 or not self.dir.is_dir():
            return []
        removed = []
        with exclusive(self.dir / ".evict.lock"):
            files = sorted(self.entries(), key=lambda e: e[1].st_mtime)
            total = sum(st.st_size for _, st in files)
            now = time.time()
            for path, st in files:
                if total <= self.max_bytes:
                    break
                if path.name == keep or st.st_nlink > 1 or now - st.st_mtime < GRACE:
                    continue
                with exclusive(self.dir / f".{path.name}.lock"):
                    try:
                        now_st = path.stat()
                        if now_st.st_nlink > 1 or time.time() - now_st.st_mtime < GRACE:  # used meanwhile
                            continue
                        path.unlink()
                    except FileNotFoundError:
                        continue
                total -= st.st_size
                removed.append(path.name)
        if removed:
            LOG.info("image cache over %d MiB: removed %s", self.max_bytes >> 20, ", ".join(removed))
        return removed


_cache: ImageCache | None = None


def host_cache() -> ImageCache:
    """This host's cache (one directory per compute state dir, shared by the hosts a worker serves)."""
    global _cache
    cfg = get_settings()
    directory = cfg.state_path / "image-cache"
    if _cache is None or _cache.dir != directory:
        _cache = ImageCache(directory, cfg.image_cache_max_mb << 20)
    return _cache
