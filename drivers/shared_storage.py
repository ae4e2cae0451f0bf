"""Nova's shared instance storage test and block-migration choice (libvirt driver's
``_check_shared_storage_test_file`` and ``check_can_live_migrate_source``).

The destination writes an empty file with a random name in its instance storage directory; the source looks for
that name in its own: seen means the two hosts share instance storage. ``block_migration`` is True, False or None
("auto", 2.25): auto block-migrates when the storage is not shared; True is refused on shared storage
(InvalidLocalStorage), False on storage that is not shared (InvalidSharedStorage), with Nova's messages.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from drivers.base import ComputeDriver, DriverError

PREFIX = ".stratus-shared-storage-test-"
STALE_SECONDS = 3600  # a test file no source removed (refused migration): the next test on this host drops it


class InvalidLocalStorage(DriverError):
    def __init__(self, path: str, reason: str):
        super().__init__(f"{path} is not on local storage: {reason}")


class InvalidSharedStorage(DriverError):
    def __init__(self, path: str, reason: str):
        super().__init__(f"{path} is not on shared storage: {reason}")


def create_test_file(directory: Path | None) -> str | None:
    """On the destination: the test file's name (None: this host's storage is visible to no other host)."""
    if directory is None:
        return None
    for old in directory.glob(PREFIX + "*"):
        try:
            if old.stat().st_mtime < time.time() - STALE_SECONDS:
                old.unlink()
        except OSError:
            pass
    name = PREFIX + uuid.uuid4().hex
    try:
        directory.mkdir(parents=True, exist_ok=True)  # (a host that has had no guest yet)
        (directory / name).touch(exist_ok=False)
    except OSError as exc:
        raise DriverError(f"Cannot write the shared storage test file in {directory}: {exc}") from exc
    return name


def _test_file(directory: Path | None, name: str | None) -> Path | None:
    """The test file ``name`` in ``directory``, if both are there and the name is one of ours (no path: it comes
    in a message)."""
    if directory is None or not name or not name.startswith(PREFIX) or "/" in name:
        return None
    return directory / name


def remove_test_file(directory: Path | None, name: str | None) -> None:
    if (path := _test_file(directory, name)) is not None:
        path.unlink(missing_ok=True)


def is_shared(directory: Path | None, name: str | None) -> bool:
    """On the source: whether the destination's test file is seen here (then it is removed from here)."""
    path = _test_file(directory, name)
    seen = path is not None and path.exists()
    if seen:
        path.unlink(missing_ok=True)
    return seen


def choose(block_migration: bool | None, shared: bool, host: str) -> bool:
    """Whether to block-migrate; refuses a choice the storage does not allow (Nova's messages)."""
    if block_migration is None:
        return not shared
    if block_migration and shared:
        raise InvalidLocalStorage(host, "Block migration can not be used with shared storage.")
    if not block_migration and not shared:
        raise InvalidSharedStorage(host, "Shared storage live-migration requires either shared storage or "
                                         "boot-from-volume with no local disks.")
    return block_migration


def check_destination(drv: ComputeDriver) -> dict:
    """On the destination, first (Nova's check_can_live_migrate_destination): the data for the source's check."""
    return {"shared_storage_test_file": create_test_file(drv.instance_storage_dir())}


def check_source(drv: ComputeDriver, block_migration: bool | None, dest_check: dict) -> bool:
    """On the source, before pre_live_migration (Nova's check_can_live_migrate_source): whether to block-migrate
    (``block_migration`` None is "auto"); InvalidLocalStorage / InvalidSharedStorage refuse."""
    shared = is_shared(drv.instance_storage_dir(), dest_check.get("shared_storage_test_file"))
    return choose(block_migration, shared, drv.host)
