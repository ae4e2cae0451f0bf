"""Live migration between libvirt hosts that share no disk (Nova's libvirt live migration, block migration).

- Destination, ``pre_live_migration``: the instance dir, the image in ``_base`` (fetched through the Image API
  into the host's cache, as a boot does), an empty qcow2 overlay of the flavor's size on it, the kernel/ramdisk and
  the config drive (built from the spec in the message: libvirt does not copy read-only disks). Its migrate data
  says where its files and listeners are and at which address its libvirtd takes the migration.
- Source, ``live_migrate``: ``migrateToURI3`` peer-to-peer to ``settings.live_migration_uri`` filled with that
  address, VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE, plus NON_SHARED_INC for a block
  migration (QEMU mirrors the overlay only: its base is already on the destination; the source's
  check_can_live_migrate_source chose it, drivers/shared_storage.py), with a destination XML whose paths and console listen
  addresses are the destination's. Then the source removes its instance dir.
- Abort: ``abortJob`` (the guest keeps running on the source); force complete: the guest is paused so the copy
  converges (Nova without post-copy), and the destination resumes it on arrival.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

import libvirt

from drivers import configdrive, serial_ports
from drivers.base import DriverError, HostLocalError, InstanceNotFound, InstanceSpec, LiveMigrationAborted

if TYPE_CHECKING:
    from drivers.libvirt import LibvirtDriver

LOG = logging.getLogger(__name__)
FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
         | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def migration_flags(data: dict) -> int:
    """The block migration copies the disks (NON_SHARED_INC); on shared instance storage they stay put."""
    return FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_INC if data.get("block_migration", True) else FLAGS
_jobs: dict[str, dict] = {}  # instance uuid -> the running migration on this (source) host
_jobs_lock = threading.Lock()


def pre_live_migration(drv: LibvirtDriver, instance: InstanceSpec) -> dict:
    drv.build_disk(instance)  # instance dir, _base from the image cache, the empty overlay of the flavor's size
    inst_dir = drv._instance_dir(instance.uuid)
    if instance.config_drive_files is not None and not (inst_dir / "disk.config").is_file():
        try:
            configdrive.make_iso(instance.config_drive_files, inst_dir / "disk.config")
        except (configdrive.ConfigDriveError, OSError) as exc:
            raise HostLocalError(f"Cannot build the config drive of instance {instance.uuid}: {exc}") from exc
    serial = drv._serial_listener(instance.uuid)  # a free port of this host's range (None: serial consoles off)
    address = drv.settings.live_migration_inbound_addr or drv.host_ip()
    return {"instances_dir": str(drv.instances_dir), "console_listen": drv.console_listen, "serial": list(serial) if serial else None,
            "target_connect_addr": address}


def destination_xml(xml: str, source_dir: str, data: dict) -> str:
    """The source's migratable XML with the destination's instance paths and console listeners."""
    root = ET.fromstring(xml)
    old, new = source_dir.rstrip("/") + "/", data["instances_dir"].rstrip("/") + "/"
    for el in root.iter():
        for key, value in el.attrib.items():
            if value.startswith(old):
                el.set(key, new + value[len(old):])
        if el.text and el.text.startswith(old):
            el.text = new + el.text[len(old):]
    for g in root.iterfind("./devices/graphics"):
        g.set("listen", data["console_listen"])
        for listen in g.iterfind("listen"):
            if listen.get("type") == "address":
                listen.set("address", data["console_listen"])
    for kind in ("serial", "console"):
        for dev in root.iterfind(f"./devices/{kind}"):
            source = dev.find("source")
            if dev.get("type") == "tcp" and source is not None and data.get("serial"):
                source.set("host", data["serial"][0])
                source.set("service", str(data["serial"][1]))
    return ET.tostring(root, encoding="unicode")


def _params(drv: LibvirtDriver, dom, data: dict) -> dict:
    dest_xml = destination_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE), str(drv.instances_dir), data)
    disks = [t.get("dev") for d in ET.fromstring(dest_xml).iterfind("./devices/disk")
             if d.get("device") == "disk" and d.find("readonly") is None and (t := d.find("target")) is not None]
    params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml, libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: dest_xml}
    if data.get("block_migration", True):
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = disks
    if drv.settings.live_migration_bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(drv.settings.live_migration_bandwidth)
    host = data["target_connect_addr"].rsplit(":", 1)[0] if data["target_connect_addr"].count(":") == 1 \
        else data["target_connect_addr"]
    if not host.startswith("127."):  # (libvirt refuses a loopback address: the destination's host name's then)
        params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{host}"
    return params


def live_migrate(drv: LibvirtDriver, instance_uuid: str, dest_host: str, on_started: Callable[[], None] | None,
                 data: dict | None) -> dict | None:
    dom = drv._find(instance_uuid)
    if dom is None:
        return None  # a retried step: the guest left (the destination's post step checks it arrived)
    if not data or "target_connect_addr" not in data:
        raise DriverError(f"Live migration of {instance_uuid}: the destination {dest_host} was not prepared")
    uri = drv.settings.live_migration_uri % data["target_connect_addr"]
    with drv._errors("prepare the live migration of", instance_uuid):
        was_paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        params = _params(drv, dom, data)
    job = {"dom": dom, "forced": False, "done": threading.Event(), "error": None}
    with _jobs_lock:
        _jobs[instance_uuid] = job

    def copy() -> None:
        try:
            dom.migrateToURI3(uri, params, migration_flags(data))
        except libvirt.libvirtError as exc:
            job["error"] = exc
        finally:
            job["done"].set()

    try:
        threading.Thread(target=copy, name=f"live-migrate-{instance_uuid}", daemon=True).start()
        _wait_started(dom, job)
        if on_started is not None:
            on_started()
        job["done"].wait()
    finally:
        with _jobs_lock:
            _jobs.pop(instance_uuid, None)
    exc = job["error"]
    if exc is not None:
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
            if job["forced"] and not was_paused:
                _resume_quietly(dom)
            raise LiveMigrationAborted(f"Live migration of {instance_uuid} to {dest_host} was aborted")
        cls = HostLocalError if exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_FAILED,
                                                           libvirt.VIR_ERR_SYSTEM_ERROR) else DriverError
        raise cls(f"Failed to live-migrate instance {instance_uuid} to {dest_host} ({uri}): "
                  f"{exc.get_error_message()}") from exc
    # UNDEFINE_SOURCE: the domain is gone here; its files go too after a block migration (Nova's
    # post_live_migration cleanup), on shared storage they are the destination's now
    if data.get("block_migration", True):
        shutil.rmtree(drv._instance_dir(instance_uuid), ignore_errors=True)
    serial_ports.release(instance_uuid)
    LOG.info("instance %s live-migrated to %s (%s)", instance_uuid, dest_host, uri)
    return {"resume": job["forced"] and not was_paused}


def _wait_started(dom, job: dict, timeout: float = 30.0) -> None:
    """Until libvirt reports the migration job (abortJob acts on it from then on), or the copy ended."""
    deadline = time.monotonic() + timeout
    while not job["done"].is_set() and time.monotonic() < deadline:
        try:
            if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                return
        except libvirt.libvirtError:
            return  # the domain left already
        time.sleep(0.05)


def _resume_quietly(dom) -> None:
    try:
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
    except libvirt.libvirtError as exc:
        LOG.error("cannot resume %s after an aborted forced migration: %s", dom.UUIDString(), exc)


def _job(instance_uuid: str) -> dict:
    with _jobs_lock:
        job = _jobs.get(instance_uuid)
    if job is None:
        raise DriverError(f"No live migration of instance {instance_uuid} is in progress on this host")
    return job


def abort(drv: LibvirtDriver, instance_uuid: str) -> None:
    job = _job(instance_uuid)
    with drv._errors("abort the live migration of", instance_uuid):
        job["dom"].abortJob()


def force_complete(drv: LibvirtDriver, instance_uuid: str) -> None:
    """Pause the guest so its memory stops changing and the copy converges (resumed on the destination)."""
    job = _job(instance_uuid)
    with drv._errors("force the live migration of", instance_uuid):
        if job["dom"].state()[0] != libvirt.VIR_DOMAIN_PAUSED:
            job["dom"].suspend()
            job["forced"] = True


def post_live_migration_at_destination(drv: LibvirtDriver, instance: InstanceSpec, data: dict | None) -> None:
    dom = drv._lookup(instance.uuid)  # InstanceNotFound: the guest did not arrive
    if (data or {}).get("resume"):
        with drv._errors("resume", instance.uuid):
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
    if not dom.isActive():
        raise InstanceNotFound(instance.uuid)
