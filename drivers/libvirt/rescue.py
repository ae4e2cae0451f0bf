"""Rescue and unrescue for the libvirt driver, as Nova's libvirt driver does them: the domain's own definition is
kept in ``<uuid>/unrescue.xml``; the guest is redefined to boot ``<uuid>/disk.rescue`` (a fresh overlay of the
rescue image, default the instance's own image) as vda with its own disk attached second (vdb), keeping its
kernel/ramdisk (Nova: the instance's kernel_id/ramdisk_id). Unrescue restores the saved definition and removes the
rescue disk. The live definition (does it boot disk.rescue?) says whether the guest is rescued, so a retried call
finds the work done."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from drivers.base import DriverError, HostLocalError, ImageSpec, InstanceSpec
from drivers.libvirt import imagecache

if TYPE_CHECKING:
    from drivers.libvirt import LibvirtDriver

RESCUE_DISK = "disk.rescue"
UNRESCUE_XML = "unrescue.xml"


def _is_rescued(dom) -> bool:
    return f"/{RESCUE_DISK}'" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace('"', "'")


def _replace_definition(drv: LibvirtDriver, dom, xml: str, instance_uuid: str):
    """Stop the guest (a saved memory image belongs to the old definition), define ``xml``, start it."""
    drv._hard_stop(dom, instance_uuid)
    if dom.hasManagedSaveImage(0):
        dom.managedSaveRemove(0)
    dom = drv.conn.defineXML(xml)
    dom.create()
    return dom


def rescue(drv: LibvirtDriver, instance: InstanceSpec, rescue_image: ImageSpec | None) -> None:
    inst_dir = drv._instance_dir(instance.uuid)
    dom = drv._lookup(instance.uuid)
    with drv._errors("rescue", instance.uuid):
        if _is_rescued(dom):
            if not dom.isActive():
                dom.create()
            return
        image = rescue_image or instance.image
        if image is None:
            raise DriverError(f"Instance {instance.uuid} has no image to rescue it with")
        rescue_disk = inst_dir / RESCUE_DISK
        try:
            base, fmt, _size = imagecache.fetch_base(image, drv.base_dir)
            if not rescue_disk.is_file():
                imagecache.create_overlay(base, fmt, rescue_disk, 0)
            _write(inst_dir / UNRESCUE_XML, dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except OSError as exc:
            raise HostLocalError(f"Cannot prepare the rescue of instance {instance.uuid}: {exc}") from exc
        drv._build_config_drive(instance, dom)
        paths = dataclasses.replace(drv._paths(instance), disk=str(rescue_disk), second_disk=str(inst_dir / "disk"))
        xml = drv.domain_xml(instance, paths)
        _replace_definition(drv, dom, xml, instance.uuid)


def unrescue(drv: LibvirtDriver, instance_uuid: str) -> None:
    inst_dir = drv._instance_dir(instance_uuid)
    dom = drv._lookup(instance_uuid)
    saved = inst_dir / UNRESCUE_XML
    with drv._errors("unrescue", instance_uuid):
        if _is_rescued(dom):
            if not saved.is_file():
                raise DriverError(f"Cannot unrescue instance {instance_uuid}: {saved} is missing")
            dom = _replace_definition(drv, dom, saved.read_text(), instance_uuid)
        elif not dom.isActive():
            dom.create()
    for leftover in (saved, inst_dir / RESCUE_DISK):
        leftover.unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)
