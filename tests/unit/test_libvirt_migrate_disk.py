"""The destination side of a libvirt cold migration between hosts (drivers/libvirt/migrate_disk.py) and the compute
steps around it (tasks/compute_actions.py): the downloaded transfer image becomes the instance's disk only if it
is a standalone qcow2 image, a retried step downloads nothing, and the upload/download happen only when the
source and destination differ and the conductor made a transfer image. Real qemu-img; no libvirt daemon."""
from __future__ import annotations

import subprocess
import types
import uuid as uuidlib
from pathlib import Path

import pytest

from drivers.base import DriverError
from drivers.libvirt import migrate_disk

pytestmark = pytest.mark.skipif(subprocess.run(["which", "qemu-img"], capture_output=True).returncode != 0,
                                reason="qemu-img not installed")


def _drv(tmp_path: Path):
    return types.SimpleNamespace(_instance_dir=lambda u: tmp_path / "instances" / u)


def _qcow2(path: Path, backing: Path | None = None) -> Path:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run([*args, str(path), "1M"], check=True)
    return path


def test_the_downloaded_disk_is_moved_into_the_instance_dir_once(tmp_path):
    drv, uuid = _drv(tmp_path), str(uuidlib.uuid4())
    cached = _qcow2(tmp_path / "cached")
    fetches = []
    for _ in range(2):  # a redelivered step finds the disk in place
        migrate_disk.import_disk(drv, uuid, lambda: fetches.append(1) or str(cached))
    disk = tmp_path / "instances" / uuid / "disk"
    assert disk.is_file() and not cached.exists() and fetches == [1]  # moved: the cache keeps no copy
    assert not (disk.parent / "disk.part").exists()


def test_a_disk_with_a_backing_file_is_refused(tmp_path):
    drv, uuid = _drv(tmp_path), str(uuidlib.uuid4())
    overlay = _qcow2(tmp_path / "overlay", backing=_qcow2(tmp_path / "base"))
    with pytest.raises(DriverError, match="not a standalone qcow2"):
        migrate_disk.import_disk(drv, uuid, lambda: str(overlay))
    assert list((tmp_path / "instances" / uuid).iterdir()) == []


class _Recorder:
    def __init__(self):
        self.calls: list[str] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append(name)


@pytest.mark.parametrize("source,transfer,expected", [
    ("h1", "img", ["receive_migrated_disk", "finish_migration"]),
    ("h2", "img", ["finish_migration"]),  # same host: the disk stays
    ("h1", None, ["finish_migration"]),  # a driver whose hosts share the disks (fake)
])
def test_the_destination_step_receives_the_disk_only_from_another_host(monkeypatch, source, transfer, expected):
    from tasks import compute_actions
    monkeypatch.setattr(compute_actions, "_spec_with_flavor", lambda ctx: types.SimpleNamespace(uuid="u"))
    drv = _Recorder()
    compute_actions._resize_dest(drv, {"source": source, "host": "h2", "transfer_image_id": transfer,
                                       "power_on": True})
    assert drv.calls == expected
