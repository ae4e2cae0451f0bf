"""Resize on one host for the libvirt driver (Nova's libvirt migrate_disk_and_power_off / finish_migration /
confirm_migration / finish_revert_migration, for the case where the destination is the source host).

The guest is powered off and what a revert needs is kept in ``<uuid>_resize/`` next to the instance directory
(as Nova's ``<instance dir>_resize``): copies of ``disk`` and ``disk.config`` and the domain's definition
(``domain.xml``). The instance directory then becomes the resized guest: its disk grown with ``qemu-img resize``
and the domain redefined with the new flavor. Confirm deletes the backup; revert moves the kept files back,
redefines the old domain and deletes the backup. The backup is written under a temporary name and renamed, so a
retried step finds it whole or not at all; each step checks what is already done before doing it.

A guest that comes from another host (its disk moved by drivers/libvirt/migrate_disk.py) is finished there.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from drivers.base import DriverError, HostLocalError, InstanceNotFound, InstanceSpec
from drivers.libvirt import imagecache, migrate_disk

if TYPE_CHECKING:
    from drivers.libvirt import LibvirtDriver

SUFFIX = "_resize"
DOMAIN_XML = "domain.xml"
KEPT_FILES = ("disk", "disk.config")


def backup_dir(drv: LibvirtDriver, instance_uuid: str) -> Path:
    inst_dir = drv._instance_dir(instance_uuid)
    return inst_dir.with_name(inst_dir.name + SUFFIX)


def remove_backup(drv: LibvirtDriver, instance_uuid: str) -> None:
    backup = backup_dir(drv, instance_uuid)
    for path in (backup, backup.with_name(backup.name + ".part")):
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            raise HostLocalError(f"Cannot remove {path}")


def migrate_disk_and_power_off(drv: LibvirtDriver, instance_uuid: str) -> None:
    inst_dir, backup = drv._instance_dir(instance_uuid), backup_dir(drv, instance_uuid)
    drv._power_off(instance_uuid, timeout=drv.settings.shutdown_timeout)
    if backup.is_dir():
        return
    dom = drv._lookup(instance_uuid)
    part = backup.with_name(backup.name + ".part")
    try:
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        with drv._errors("read the definition of", instance_uuid):
            (part / DOMAIN_XML).write_text(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        for name in KEPT_FILES:
            if (inst_dir / name).is_file():
                shutil.copyfile(inst_dir / name, part / name)
        os.rename(part, backup)
    except OSError as exc:
        shutil.rmtree(part, ignore_errors=True)
        raise HostLocalError(f"Cannot keep the disk of instance {instance_uuid} for a revert: {exc}") from exc


def finish_migration(drv: LibvirtDriver, instance: InstanceSpec, power_on: bool) -> None:
    uuid = instance.uuid
    disk, backup = drv._instance_dir(uuid) / "disk", backup_dir(drv, uuid)
    dom = drv._find(uuid)
    if not (backup / DOMAIN_XML).is_file() and migrate_disk.has_migrated_disk(drv, uuid):
        migrate_disk.finish_on_new_host(drv, instance, power_on, dom)
        return
    if dom is None or not (backup / DOMAIN_XML).is_file():
        raise DriverError(f"Instance {uuid} was neither powered off for a resize on {drv.host} nor has its "
                          f"migrated disk here")
    if power_on and migrate_disk.runs_as(dom, instance):
        return  # a retry after the resized guest started
    new_size = instance.root_gb * imagecache.GiB
    if new_size and new_size < imagecache.qemu_img_info(backup / "disk")["virtual-size"]:
        raise DriverError("Unable to resize disk down.")  # Nova's message (the API refuses it first)
    with drv._errors("resize", uuid):
        drv._hard_stop(dom, uuid)
        if new_size > imagecache.qemu_img_info(disk)["virtual-size"]:
            imagecache.grow(disk, new_size)
        dom = drv.conn.defineXML(drv.domain_xml(instance))  # same name and uuid: replaces the definition
        drv._build_config_drive(instance, dom)  # kept from the old guest unless it is missing
        if power_on and not dom.isActive():
            dom.create()


def finish_revert_migration(drv: LibvirtDriver, instance_uuid: str, power_on: bool) -> None:
    inst_dir, backup = drv._instance_dir(instance_uuid), backup_dir(drv, instance_uuid)
    dom = drv._find(instance_uuid)
    saved = backup / DOMAIN_XML
    if saved.is_file():
        with drv._errors("revert the resize of", instance_uuid):
            if dom is not None:
                drv._hard_stop(dom, instance_uuid)
                if dom.hasManagedSaveImage(0):
                    dom.managedSaveRemove(0)
            try:
                inst_dir.mkdir(parents=True, exist_ok=True)
                for name in KEPT_FILES:  # a retry finds the files it already moved back gone from the backup
                    if (backup / name).is_file():
                        os.replace(backup / name, inst_dir / name)
            except OSError as exc:
                raise HostLocalError(f"Cannot restore the disk of instance {instance_uuid}: {exc}") from exc
            dom = drv.conn.defineXML(saved.read_text())
        remove_backup(drv, instance_uuid)
    elif dom is None:
        raise InstanceNotFound(instance_uuid)
    if power_on:
        with drv._errors("power on", instance_uuid):
            if not dom.isActive():
                dom.create()
