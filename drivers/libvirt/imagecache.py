"""Base-image cache (``<instances_dir>/_base``, as in Nova) and qcow2 overlays, through qemu-img."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from core.file_lock import exclusive
from drivers.base import DriverError, HostLocalError, ImageSpec

GiB = 1 << 30
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def _run(*args: str, what: str) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise HostLocalError(f"{what}: {args[0]} is not installed on this host") from None
    except subprocess.TimeoutExpired:
        raise HostLocalError(f"{what}: {args[0]} timed out") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise DriverError(f"{what}: {err[-1] if err else f'exit status {proc.returncode}'}")
    return proc.stdout


def qemu_img_info(path: str | Path) -> dict:
    out = _run("qemu-img", "info", "--output=json", str(path), what=f"Cannot inspect image {path}")
    return json.loads(out)


def cache_name(image_id: str) -> str:
    if _SAFE.match(image_id):
        return image_id
    return hashlib.sha1(image_id.encode()).hexdigest()


def _copy_verified(image: ImageSpec, dest: Path) -> None:
    """Copy the image's data (fetched into the host's image cache) to dest (via a temporary name), checking its md5
    against image.checksum."""
    source = image.data_path()
    if not source or not os.path.isfile(source):
        raise DriverError(f"Image {image.id} has no data at {source!r}")
    tmp = dest.with_name(f".{dest.name}.part.{os.getpid()}")
    md5 = hashlib.md5()  # noqa: S324 - Glance v2's "checksum" field is md5
    try:
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                md5.update(chunk)
                out.write(chunk)
        if image.checksum and md5.hexdigest() != image.checksum.lower():
            raise DriverError(f"Image {image.id} is corrupt: md5 {md5.hexdigest()} does not match its checksum "
                              f"{image.checksum}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except OSError as exc:
        raise HostLocalError(f"Cannot cache image {image.id} in {dest.parent}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def fetch_file(image: ImageSpec, base_dir: Path) -> Path:
    """Cache a kernel/ramdisk image as is; return its cached path."""
    dest = base_dir / cache_name(image.id)
    if dest.is_file():
        return dest
    with exclusive(base_dir / f".{dest.name}.lock"):
        if not dest.is_file():
            _copy_verified(image, dest)
    return dest


def fetch_base(image: ImageSpec, base_dir: Path) -> tuple[Path, str, int]:
    """Cache a disk image in base_dir; return (path, format, virtual size in bytes).

    The format is detected by qemu-img and must agree with the declared disk_format (a raw image claiming to
    be qcow2, or garbage, is refused); images with a backing file are refused (they could read host files).
    """
    dest = base_dir / cache_name(image.id)
    with exclusive(base_dir / f".{dest.name}.lock"):
        if not dest.is_file():
            _copy_verified(image, dest)
            try:
                _check(image, qemu_img_info(dest))
            except DriverError:
                dest.unlink(missing_ok=True)
                raise
        info = qemu_img_info(dest)
    return dest, info["format"], int(info["virtual-size"])


def _check(image: ImageSpec, info: dict) -> None:
    fmt = info.get("format")
    declared = (image.disk_format or "").lower()
    if fmt not in ("raw", "qcow2"):
        raise DriverError(f"Image {image.id} has unsupported format {fmt!r}")
    if declared in ("qcow2", "raw") and declared != fmt:
        raise DriverError(f"Image {image.id} is declared {declared} but its data is {fmt}: the image is corrupt "
                          f"or mislabelled")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise DriverError(f"Image {image.id} has a backing file; such images are refused")
    if fmt == "qcow2":
        _run("qemu-img", "check", "-q", "-f", "qcow2", str(info.get("filename")),
             what=f"Image {image.id} failed qemu-img check")


def create_overlay(base: Path, base_format: str, dest: Path, size: int) -> None:
    """qcow2 overlay ``dest`` backed by ``base``, with virtual size ``size`` bytes (0: the base's size)."""
    tmp = dest.with_name(f".{dest.name}.part")
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), str(tmp)]
    if size:
        args.append(str(size))
    try:
        _run(*args, what=f"Cannot create disk {dest}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def free_and_total(path: Path) -> tuple[int, int]:
    usage = shutil.disk_usage(path)
    return usage.free, usage.total


# Glance disk_format -> qemu-img output format, for snapshots (Nova: the disk's own format unless
# [libvirt]snapshot_image_format says otherwise; Stratus: the snapshot image's disk_format).
SNAPSHOT_FORMATS = {"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "vhd": "vpc", "vhdx": "vhdx"}


def extract(disk: Path, disk_format: str, dest: Path, force_share: bool = False, src_format: str = "qcow2") -> None:
    """Write ``disk`` (an overlay and its backing chain) as one standalone image ``dest`` in Glance's
    ``disk_format``. ``force_share``: the disk is open in a paused QEMU (which flushed it when it stopped)."""
    fmt = SNAPSHOT_FORMATS.get(disk_format)
    if fmt is None:
        raise DriverError(f"Cannot snapshot to disk format {disk_format!r}; use one of "
                          f"{', '.join(SNAPSHOT_FORMATS)}")
    tmp = dest.with_name(f".{dest.name}.part")
    args = ["qemu-img", "convert", "-q", *(["-U"] if force_share else []), "-f", src_format, "-O", fmt, str(disk),
            str(tmp)]
    try:
        _run(*args, what=f"Cannot snapshot disk {disk}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def grow(disk: Path, size: int, disk_format: str = "qcow2") -> None:
    """Make ``disk``'s virtual size ``size`` bytes (only ever larger; the guest's filesystem is its own business)."""
    _run("qemu-img", "resize", "-q", "-f", disk_format, str(disk), str(size), what=f"Cannot resize disk {disk}")
