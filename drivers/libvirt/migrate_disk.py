"""Cold migration and resize to another host for the libvirt driver: the disk travels through the Image API.

Compute hosts share no disk (issue 25), so as Nova's cross-cell resize does with a snapshot, the source uploads the
stopped guest's disk, flattened (``qemu-img convert``: the image no longer needs the source's ``_base``), as the
hidden transfer image the conductor made for the migration (tasks/compute_actions.py); the destination downloads it
through its image cache (checksum-verified) and moves it into its instance directory (``import_disk``), then
``finish_on_new_host`` grows it for a resize, regenerates the config drive from the spec in the message, defines
the domain and starts it. The source keeps its guest powered off and its ``<uuid>_resize`` backup for a revert;
confirm destroys both there (ComputeDriver.confirm_migration), revert destroys the destination's guest and the
source restores its own (resize.finish_revert_migration)."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

import libvirt

from drivers.base import DriverError, HostLocalError, InstanceSpec
from drivers.libvirt import imagecache

if TYPE_CHECKING:
    from drivers.libvirt import LibvirtDriver


def import_disk(drv: LibvirtDriver, instance_uuid: str, fetch: Callable[[], str]) -> None:
    """Make the migrated disk this host's ``<instance dir>/disk``: ``fetch()`` gives the local path of the
    downloaded transfer image, which is moved (not copied when on one filesystem) so the cache keeps no copy.
    A retried step finds the disk in place and downloads nothing."""
    inst_dir = drv._instance_dir(instance_uuid)
    disk = inst_dir / "disk"
    if disk.is_file():
        return
    part = inst_dir / "disk.part"
    try:
        inst_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(inst_dir, 0o755)
        shutil.move(fetch(), part)
        os.chmod(part, 0o644)
        info = imagecache.qemu_img_info(part)
        if info.get("format") != "qcow2" or info.get("backing-filename"):
            raise DriverError(f"The migrated disk of instance {instance_uuid} is not a standalone qcow2 image")
        os.replace(part, disk)
    except OSError as exc:
        raise HostLocalError(f"Cannot place the migrated disk of instance {instance_uuid}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)


def finish_on_new_host(drv: LibvirtDriver, instance: InstanceSpec, power_on: bool, dom) -> None:
    """finish_migration on a host the guest came to with ``import_disk``: idempotent (a retry finds the domain
    defined with the new flavor, or running with it)."""
    uuid = instance.uuid
    disk = drv._instance_dir(uuid) / "disk"
    if not disk.is_file():
        raise DriverError(f"Instance {uuid} has no migrated disk on {drv.host}")
    image = instance.image
    if dom is not None and power_on and runs_as(dom, instance):
        return  # a retry after the migrated guest started
    with drv._errors("finish the migration of", uuid):
        if dom is not None and dom.isActive():
            drv._hard_stop(dom, uuid)  # a retry: the definition below may change
        new_size = instance.root_gb * imagecache.GiB
        if new_size > imagecache.qemu_img_info(disk)["virtual-size"]:
            imagecache.grow(disk, new_size)
        try:  # a kernel/ramdisk boot needs them in this host's _base
            drv.base_dir.mkdir(parents=True, exist_ok=True)
            for extra in (image.kernel, image.ramdisk) if image is not None else ():
                if extra is not None:
                    imagecache.fetch_file(extra, drv.base_dir)
        except OSError as exc:
            raise HostLocalError(f"Cannot cache the kernel of instance {uuid}: {exc}") from exc
        dom = drv.conn.defineXML(drv.domain_xml(instance))
        drv._build_config_drive(instance, dom)  # from this message's spec: the source's stayed there
        if power_on and not dom.isActive():
            dom.create()


__all__ = ["import_disk", "finish_on_new_host", "has_migrated_disk", "runs_as"]


def runs_as(dom, instance: InstanceSpec) -> bool:
    """The domain runs and is defined with ``instance``'s flavor (written only after the disk grew)."""
    with_flavor = f'flavor name="{instance.flavor_name}" id="{instance.flavor_id}"'
    return bool(dom.isActive()) and with_flavor in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace("'", '"')


def has_migrated_disk(drv: LibvirtDriver, instance_uuid: str) -> bool:
    """Whether this host's instance dir holds a disk (moved in by import_disk, when no resize backup is here)."""
    return (drv._instance_dir(instance_uuid) / "disk").is_file()
