"""Libvirt/QEMU compute driver (nova/virt/libvirt/driver.py is the model, in miniature).

Layout on the host (``settings.instances_dir``, as in Nova)::

    _base/<image id>          cached image data (disk images keep their format, raw or qcow2; kernels/ramdisks)
    <uuid>/disk               qcow2 overlay backed by _base/<image id>, resized to the flavor's root_gb
    <uuid>/console.log        serial console log (written by virtlogd, appended across boots)

Guests are persistent libvirt domains named by the instance UUID. All calls are idempotent. Power actions follow
Nova: soft stop/reboot press the ACPI power button and fall back to a hard destroy after a timeout; suspend is
libvirt's managedSave (the guest's memory goes to disk and the domain shuts off; resume restores it).
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from core.metadata_docs import with_devices
from core.power_state import PowerState
from core.settings import Settings
from drivers import configdrive
from drivers import serial_ports
from drivers.base import ComputeDriver, ConsoleEndpoint, ConsoleUnavailable, console_endpoint_host, console_listen, DriverError, DriverUnavailable, HostLocalError, HostResources, ImageSpec, InstanceInfo, InstanceNotFound, InstanceSpec, tagged_devices, uptime_line
from drivers.libvirt import config, imagecache

# Without libvirt-python this package still imports and LibvirtDriver says what is missing (the host registers as
# down); hence the modules that import libvirt themselves (probe, resize, rescue, diagnostics) are imported where used.
try:
    import libvirt
except ImportError:  # pragma: no cover - reported by make_driver / init_host
    libvirt = None

LOG = logging.getLogger(__name__)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_CONSOLE_BYTES = 100 * 1024  # Nova's limit for get_console_output
DEFAULT_CMDLINE = "root=/dev/vda console=tty0 console=ttyS0"

if libvirt is not None:
    # libvirt-python prints every error to stderr by default; we turn them into exceptions instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

    # Nova's LIBVIRT_POWER_STATE
    _POWER = {
        libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
        libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
        libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
        libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
        libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
        libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
    }
    # Errors that say "this host/hypervisor is in trouble" rather than "this request is wrong".
    _HOST_LOCAL = {
        libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INTERNAL_ERROR,
        libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_NO_MEMORY, libvirt.VIR_ERR_RESOURCE_BUSY,
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_HOOK_SCRIPT_FAILED,
    }
    # The connection to libvirtd broke (daemon restarted): retry the task on a new connection.
    _CONNECTION_LOST = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_INVALID_CONN}


def _code(exc: Exception) -> int | None:
    return exc.get_error_code() if libvirt is not None and isinstance(exc, libvirt.libvirtError) else None


class LibvirtDriver(ComputeDriver):
    capabilities = {
        "supports_pause": True,
        "supports_suspend": True,
        "supports_console_output": True,
        "supports_vnc_console": True,
        "supports_spice_console": True,
        "supports_serial_console": True,
        # cold migrate / resize to another host: the disk travels through the Image API (migrate_disk.py)
        "supports_migrate_to_other_host": True,
        "moves_disk_through_image_api": True,
    }
    #: Seconds a SOFT reboot waits for the guest to shut down before a HARD reboot (Nova: 120).
    soft_reboot_timeout: float = 60.0
    #: While waiting for an ACPI shutdown, press the power button again this often (Nova: 10 s).
    shutdown_retry_interval: float = 10.0
    #: Address the VNC/SPICE servers listen on (the console proxies must reach it; drivers.base.console_listen).
    console_listen: str = "127.0.0.1"
    poll_interval: float = 0.05

    def __init__(self, host: str, settings: Settings, uri: str | None = None):
        super().__init__(host)
        if libvirt is None:
            raise HostLocalError("libvirt-python is not installed (pip install libvirt-python)")
        self.settings = settings
        self.uri = uri or settings.libvirt_uri
        self.instances_dir = Path(settings.instances_dir)
        self.base_dir = self.instances_dir / "_base"
        self._conn_lock = threading.Lock()
        self._connection = None
        self._conn_pid = 0
        self._virt_type: str | None = None
        self.console_listen = console_listen(settings)
        self.soft_reboot_timeout = float(getattr(settings, "libvirt_soft_reboot_timeout", self.soft_reboot_timeout))

    # -- connection and errors --------------------------------------------------------------------------
    @property
    def conn(self):
        c = self._connection
        if c is not None and self._conn_pid != os.getpid():
            # Forked (Celery prefork) after connecting: a libvirt connection must not cross fork(). Drop it
            # without closing (the parent still uses it) and open our own.
            self._connection = c = None
        if c is not None:
            try:
                if c.isAlive():
                    return c
            except libvirt.libvirtError:
                pass
        with self._conn_lock:
            if self._connection is None or self._connection is c:
                try:
                    self._connection = libvirt.open(self.uri)
                    self._conn_pid = os.getpid()
                except libvirt.libvirtError as exc:
                    raise HostLocalError(f"Cannot connect to libvirt at {self.uri}: {exc.get_error_message()}. "
                                         f"Is libvirtd running (tools/libvirt-up)?") from exc
            return self._connection

    @contextmanager
    def _errors(self, action: str, instance_uuid: str | None = None):
        try:
            yield
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN and instance_uuid:
                raise InstanceNotFound(instance_uuid) from exc
            who = f" instance {instance_uuid}" if instance_uuid else ""
            cls = HostLocalError if code in _HOST_LOCAL else DriverError
            if code in _CONNECTION_LOST:
                cls = DriverUnavailable  # the task is retried with backoff on a fresh connection
            raise cls(f"Failed to {action}{who}: {exc.get_error_message()}") from exc

    def _lookup(self, instance_uuid: str):
        try:
            return self.conn.lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_ARG):
                raise InstanceNotFound(instance_uuid) from None
            raise HostLocalError(f"Cannot look up instance {instance_uuid}: {exc.get_error_message()}") from exc

    def _find(self, instance_uuid: str):
        try:
            return self._lookup(instance_uuid)
        except InstanceNotFound:
            return None

    @contextmanager
    def _instance_lock(self, instance_uuid: str):
        """Serialise mutating calls on one instance across threads and worker processes (flock on
        ``<uuid>/.lock``; destroy removes it with the directory, so a waiter then finds the instance gone)."""
        inst_dir = self._instance_dir(instance_uuid)
        try:
            fh = open(inst_dir / ".lock", "a")
        except FileNotFoundError:
            yield  # no directory: nothing on disk to protect
            return
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- host -----------------------------------------------------------------------------------------------
    def init_host(self) -> None:
        self.conn  # noqa: B018 - connect now, so a dead libvirtd fails the worker's start
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.instances_dir, 0o755)
            os.chmod(self.base_dir, 0o755)
        except OSError as exc:
            raise HostLocalError(f"Cannot prepare {self.instances_dir}: {exc}") from exc
        for parent in [self.instances_dir, *self.instances_dir.parents]:
            if not os.stat(parent).st_mode & 0o001:
                LOG.warning("%s is not searchable by others: QEMU (running as the libvirt-qemu user) cannot "
                            "open disks under %s", parent, self.instances_dir)
                break
        LOG.info("libvirt driver on %s: uri=%s virt_type=%s", self.host, self.uri, self.virt_type)

    @property
    def virt_type(self) -> str:
        if self._virt_type is None:
            wanted = (self.settings.libvirt_virt_type or "auto").lower()
            if wanted not in ("auto", "kvm", "qemu"):
                raise DriverError(f"libvirt_virt_type must be auto, kvm or qemu, not {wanted!r}")
            if wanted == "auto":
                from drivers.libvirt import probe
                wanted = probe.detect_virt_type(self.conn, self.instances_dir)
            self._virt_type = wanted
        return self._virt_type

    def get_host_uptime(self) -> str:
        """This host's ``uptime`` line, as Nova's libvirt driver runs ``uptime`` (the compute worker runs on the
        hypervisor's host)."""
        with open("/proc/uptime") as fh:
            up_seconds = float(fh.read().split()[0])
        return uptime_line(time.time(), up_seconds, os.getloadavg())

    def get_available_resource(self) -> HostResources:
        with self._errors("read host resources"):
            _model, _mem, cpus, *_ = self.conn.getInfo()
            version = self.conn.getVersion()
            vcpus_used = 0
            for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                if UUID_RE.match(dom.name()):
                    ncpu = dom.info()[3]
                    vcpus_used += ncpu
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        free, total = imagecache.free_and_total(self.instances_dir)
        meminfo = _meminfo()
        mem_total = meminfo.get("MemTotal", 0) // 1024
        memory_used = mem_total - meminfo.get("MemAvailable", meminfo.get("MemFree", 0)) // 1024
        return HostResources(
            hypervisor_hostname=self.host, hypervisor_type="QEMU", hypervisor_version=version,
            vcpus=cpus, memory_mb=mem_total, local_gb=total // imagecache.GiB,
            vcpus_used=vcpus_used, memory_mb_used=memory_used, local_gb_used=(total - free) // imagecache.GiB,
            host_ip=self.host_ip(), traits=_host_traits())

    def host_ip(self) -> str:
        """This host's address on the management network (settings.my_ip, else the default route's source)."""
        return self.settings.my_ip or _host_ip()

    def list_instances(self) -> list[str]:
        with self._errors("list domains"):
            return sorted(d.name() for d in self.conn.listAllDomains(0) if UUID_RE.match(d.name()))

    def list_disks(self) -> list[str]:
        if not self.instances_dir.is_dir():
            return []
        return sorted(p.name for p in self.instances_dir.iterdir() if UUID_RE.match(p.name) and p.is_dir())

    # -- disks ----------------------------------------------------------------------------------------------
    def _instance_dir(self, instance_uuid: str) -> Path:
        if not UUID_RE.match(instance_uuid or ""):
            raise DriverError(f"Invalid instance UUID {instance_uuid!r}")
        return self.instances_dir / instance_uuid

    def cache_image(self, image: ImageSpec) -> None:
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            imagecache.fetch_base(image, self.base_dir)
            for extra in (image.kernel, image.ramdisk):
                if extra is not None:
                    imagecache.fetch_file(extra, self.base_dir)
        except OSError as exc:
            raise HostLocalError(f"Cannot cache image {image.id}: {exc}") from exc

    def build_disk(self, instance: InstanceSpec) -> None:
        image = instance.image
        if image is None:
            raise DriverError("The libvirt driver boots from an image; none was given")
        inst_dir = self._instance_dir(instance.uuid)
        disk = inst_dir / "disk"
        if disk.is_file():
            return
        created_dir = not inst_dir.exists()
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            base, fmt, vsize = imagecache.fetch_base(image, self.base_dir)
            for extra in (image.kernel, image.ramdisk):
                if extra is not None:
                    imagecache.fetch_file(extra, self.base_dir)
            size = instance.root_gb * imagecache.GiB
            if size and size < vsize:
                raise DriverError(f"Flavor's disk ({instance.root_gb} GiB) is too small for image {image.id} "
                                  f"({vsize} bytes)")
            inst_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(inst_dir, 0o755)
            imagecache.create_overlay(base, fmt, disk, size if size > vsize else 0)
        except OSError as exc:
            if created_dir:
                shutil.rmtree(inst_dir, ignore_errors=True)
            raise HostLocalError(f"Cannot build the disk of instance {instance.uuid}: {exc}") from exc
        except DriverError:
            if created_dir:
                shutil.rmtree(inst_dir, ignore_errors=True)
            raise

    def _paths(self, instance: InstanceSpec) -> config.DiskPaths:
        inst_dir = self._instance_dir(instance.uuid)
        disk = inst_dir / "disk"
        if not disk.is_file():
            raise DriverError(f"Instance {instance.uuid} has no disk: build_disk must run before spawn")
        image = instance.image
        kernel = ramdisk = cmdline = None
        if image is not None and image.kernel is not None:
            kernel = str(self.base_dir / imagecache.cache_name(image.kernel.id))
            if image.ramdisk is not None:
                ramdisk = str(self.base_dir / imagecache.cache_name(image.ramdisk.id))
            cmdline = (image.properties or {}).get("os_command_line") or DEFAULT_CMDLINE
            net = instance.network
            if net and os.path.isdir(f"/sys/class/net/{net.get('bridge') or '-'}"):  # (see _nic)
                # The guest's address on the kernel command line (there is no DHCP server on the bridge):
                # stratus.ip=<addr>/<prefix> stratus.gw=<gateway>; tools/build-test-image's /init applies it.
                cmdline += (f" stratus.net=1 stratus.ip={net['address']}/{net['prefixlen']} "
                            f"stratus.gw={net['gateway']} stratus.mac={net['mac']}")
            for p in (kernel, ramdisk):
                if p and not os.path.isfile(p):
                    raise DriverError(f"Instance {instance.uuid}: {p} is missing; run build_disk again")
        config_drive = inst_dir / "disk.config"
        return config.DiskPaths(disk=str(disk), console_log=str(inst_dir / "console.log"),
                                kernel=kernel, ramdisk=ramdisk, cmdline=cmdline,
                                config_drive=str(config_drive) if instance.config_drive_files is not None else None)

    def _nic(self, instance: InstanceSpec) -> tuple[str, str | None]:
        """(bridge, MAC) of the guest's NIC: the Stratus network's bridge when the instance has an address on it
        and the bridge exists (tools/stratus-network up); else settings.libvirt_bridge or user-mode."""
        net = instance.network
        if not net:
            return self.settings.libvirt_bridge, None
        bridge = net.get("bridge") or ""
        if bridge and os.path.isdir(f"/sys/class/net/{bridge}"):
            return bridge, net["mac"]
        LOG.warning("instance %s: network bridge %r does not exist (run tools/stratus-network up); its NIC is "
                    "not on the Stratus network", instance.uuid, bridge)
        return self.settings.libvirt_bridge, net["mac"]

    def _build_config_drive(self, instance: InstanceSpec, dom) -> None:
        """Made once the domain is defined, so that meta_data.json lists the tagged devices at the addresses
        libvirt gave them (Nova's _create_configdrive runs as the define's post-XML callback likewise)."""
        if instance.config_drive_files is None:
            return
        target = self._instance_dir(instance.uuid) / "disk.config"
        if target.is_file():
            return
        files = instance.config_drive_files
        if _has_tags(instance):
            files = with_devices(files, self._devices_of(dom, instance))
        try:
            configdrive.make_iso(files, target)
        except (configdrive.ConfigDriveError, OSError) as exc:
            raise HostLocalError(f"Cannot build the config drive of instance {instance.uuid}: {exc}") from exc

    def domain_xml(self, instance: InstanceSpec, paths: config.DiskPaths | None = None) -> str:
        bridge, mac = self._nic(instance)
        return config.domain_xml(instance, paths or self._paths(instance), self.virt_type, bridge=bridge,
                                 listen=self.console_listen, mac=mac, serial=self._serial_listener(instance.uuid))

    def _serial_listener(self, instance_uuid: str) -> tuple[str, int] | None:
        """Where the guest's serial port listens: the port its domain already has (a redefinition keeps it), else
        a free one of the range on this host; None when serial consoles are off."""
        if not self.settings.serial_console_enabled:
            return None
        dom = self._find(instance_uuid)
        if dom is not None:
            with self._errors("read the domain XML", instance_uuid):
                own = config.serial_listeners(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if own:
                return own[0]
        with self._errors("list the domains"):
            others = [d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) for d in self.conn.listAllDomains(0)
                      if d.UUIDString() != instance_uuid]
        taken = {port for xml in others for addr, port in config.serial_listeners(xml)
                 if addr in (self.console_listen, "0.0.0.0", "::")}
        port = serial_ports.acquire(self.console_listen, instance_uuid, self.settings.serial_port_range, taken)
        return self.console_listen, port

    # -- live migration (drivers/libvirt/live_migration.py) --------------------------------------------------
    def instance_storage_dir(self) -> Path:
        return self.instances_dir

    def pre_live_migration(self, instance: InstanceSpec) -> dict:
        from drivers.libvirt import live_migration
        self._instance_dir(instance.uuid)
        return live_migration.pre_live_migration(self, instance)

    def live_migrate(self, instance_uuid: str, dest_host: str, on_started=None,
                     migrate_data: dict | None = None) -> dict | None:
        from drivers.libvirt import live_migration
        self._instance_dir(instance_uuid)
        with self._instance_lock(instance_uuid):
            return live_migration.live_migrate(self, instance_uuid, dest_host, on_started, migrate_data)

    def post_live_migration_at_destination(self, instance: InstanceSpec, migrate_data: dict | None) -> None:
        from drivers.libvirt import live_migration
        live_migration.post_live_migration_at_destination(self, instance, migrate_data)

    def live_migration_abort(self, instance_uuid: str) -> None:
        from drivers.libvirt import live_migration
        live_migration.abort(self, instance_uuid)

    def live_migration_force_complete(self, instance_uuid: str) -> None:
        from drivers.libvirt import live_migration
        live_migration.force_complete(self, instance_uuid)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def spawn(self, instance: InstanceSpec) -> None:
        self._instance_dir(instance.uuid)
        with self._instance_lock(instance.uuid):
            self._spawn(instance)

    def _spawn(self, instance: InstanceSpec) -> None:
        dom = self._find(instance.uuid)
        defined_here = dom is None
        try:
            if dom is None:
                xml = self.domain_xml(instance)
                with self._errors("define", instance.uuid):
                    dom = self.conn.defineXML(xml)
            self._build_config_drive(instance, dom)
            with self._errors("start", instance.uuid):
                state = dom.state()[0]
                if not dom.isActive():
                    try:
                        dom.create()
                    except libvirt.libvirtError as exc:
                        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or not dom.isActive():
                            raise  # (OPERATION_INVALID + active: another worker started it meanwhile)
                elif state == libvirt.VIR_DOMAIN_PAUSED:
                    dom.resume()
                if dom.state()[0] not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                    raise HostLocalError(f"Instance {instance.uuid} did not start: {self._state_name(dom)}")
        except BaseException:
            if defined_here and dom is not None:
                self._undefine(dom, instance.uuid, quiet=True)
            raise

    def _devices_of(self, dom, instance: InstanceSpec) -> list[dict]:
        with self._errors("read the domain XML", instance.uuid):
            xml = dom.XMLDesc(0)
        macs = {instance.network["mac"]} if instance.network else set()
        return tagged_devices(instance, config.device_buses(xml, macs))

    def device_metadata(self, instance: InstanceSpec) -> list[dict]:
        """The tagged NIC and root disk at the PCI addresses of the defined domain's XML."""
        return self._devices_of(self._lookup(instance.uuid), instance)

    def destroy(self, instance_uuid: str, destroy_disks: bool = True) -> None:
        inst_dir = self._instance_dir(instance_uuid)
        with self._instance_lock(instance_uuid):
            dom = self._find(instance_uuid)
            if dom is not None:
                self._undefine(dom, instance_uuid)
            if destroy_disks:
                shutil.rmtree(inst_dir, ignore_errors=True)
                if inst_dir.exists():
                    raise HostLocalError(f"Cannot remove {inst_dir}")
                from drivers.libvirt import resize
                resize.remove_backup(self, instance_uuid)  # a same-host resize's <uuid>_resize (Nova deletes it too)
            serial_ports.release(instance_uuid)

    def _undefine(self, dom, instance_uuid: str, quiet: bool = False) -> None:
        try:
            self._hard_stop(dom, instance_uuid)
            flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                     | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    raise
                dom.undefine()
        except (libvirt.libvirtError, DriverError) as exc:
            if quiet:
                LOG.error("Cleanup of instance %s failed: %s", instance_uuid, exc)
                return
            if isinstance(exc, DriverError):
                raise
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return
            raise HostLocalError(f"Failed to undefine instance {instance_uuid}: {exc.get_error_message()}") from exc

    def _hard_stop(self, dom, instance_uuid: str) -> None:
        """virDomainDestroy with Nova's retry: QEMU can be slow to die (EBUSY) under load."""
        for attempt in range(3):
            try:
                if not dom.isActive():
                    return
                dom.destroy()
                return
            except libvirt.libvirtError as exc:
                code = exc.get_error_code()
                if code == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                if code == libvirt.VIR_ERR_OPERATION_INVALID:  # "domain is not running": raced with a stop
                    return
                if attempt == 2 or code not in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_OPERATION_FAILED,
                                                  libvirt.VIR_ERR_OPERATION_TIMEOUT):
                    raise HostLocalError(f"Failed to destroy instance {instance_uuid}: "
                                         f"{exc.get_error_message()}") from exc
                time.sleep(1)

    def _wait_shutoff(self, dom, timeout: float, press_again: bool = True) -> bool:
        """Press the ACPI power button and wait up to ``timeout`` s for the guest to shut off."""
        deadline = time.monotonic() + timeout
        next_press = 0.0
        while True:
            now = time.monotonic()
            try:
                if not dom.isActive():
                    return True
                if now >= next_press and now < deadline:
                    dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
                    next_press = now + self.shutdown_retry_interval if press_again else float("inf")
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
                    return True  # it stopped between the two calls
                raise
            if now >= deadline:
                return False
            time.sleep(self.poll_interval)

    def power_off(self, instance_uuid: str, timeout: int = 0) -> None:
        with self._instance_lock(instance_uuid):
            self._power_off(instance_uuid, timeout)

    def _power_off(self, instance_uuid: str, timeout: int = 0) -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("power off", instance_uuid):
            if not dom.isActive():
                if dom.hasManagedSaveImage(0):
                    dom.managedSaveRemove(0)  # a suspended guest that is stopped loses its saved memory
                return
            if timeout and timeout > 0 and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                if self._wait_shutoff(dom, timeout):
                    return
                LOG.info("Instance %s did not shut down within %s s; destroying it", instance_uuid, timeout)
            self._hard_stop(dom, instance_uuid)

    def power_on(self, instance_uuid: str) -> None:
        with self._instance_lock(instance_uuid):
            self._power_on(instance_uuid)

    def _power_on(self, instance_uuid: str) -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("power on", instance_uuid):
            if not dom.isActive():
                dom.create()
            elif dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()

    def reboot(self, instance_uuid: str, reboot_type: str = "SOFT") -> None:
        with self._instance_lock(instance_uuid):
            self._reboot(instance_uuid, reboot_type)

    def _reboot(self, instance_uuid: str, reboot_type: str = "SOFT") -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("reboot", instance_uuid):
            if reboot_type.upper() == "SOFT" and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                # Nova's _soft_reboot: ACPI shutdown, wait, start again; HARD when the guest ignores it.
                if self._wait_shutoff(dom, self.soft_reboot_timeout):
                    dom.create()
                    return
                LOG.info("Instance %s ignored the soft reboot for %s s; rebooting hard", instance_uuid,
                         self.soft_reboot_timeout)
            # HARD (Nova's _hard_reboot): destroy and start again; a saved memory image is discarded.
            self._hard_stop(dom, instance_uuid)
            if dom.hasManagedSaveImage(0):
                dom.managedSaveRemove(0)
            dom.create()

    def pause(self, instance_uuid: str) -> None:
        with self._instance_lock(instance_uuid):
            self._pause(instance_uuid)

    def _pause(self, instance_uuid: str) -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("pause", instance_uuid):
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_PAUSED:
                return
            self._require_running(dom, instance_uuid, "pause")
            dom.suspend()

    def unpause(self, instance_uuid: str) -> None:
        with self._instance_lock(instance_uuid):
            self._unpause(instance_uuid)

    def _unpause(self, instance_uuid: str) -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("unpause", instance_uuid):
            state = dom.state()[0]
            if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                return
            if state != libvirt.VIR_DOMAIN_PAUSED:
                raise DriverError(f"Cannot unpause instance {instance_uuid}: it is {self._state_name(dom)}")
            dom.resume()

    def suspend(self, instance_uuid: str) -> None:
        """managedSave: memory to disk, domain shut off; get_info then says SUSPENDED."""
        with self._instance_lock(instance_uuid):
            self._suspend(instance_uuid)

    def _suspend(self, instance_uuid: str) -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("suspend", instance_uuid):
            if not dom.isActive() and dom.hasManagedSaveImage(0):
                return
            if dom.state()[0] not in (libvirt.VIR_DOMAIN_PAUSED,):
                self._require_running(dom, instance_uuid, "suspend")
            dom.managedSave(0)

    def resume(self, instance_uuid: str) -> None:
        with self._instance_lock(instance_uuid):
            self._resume(instance_uuid)

    def _resume(self, instance_uuid: str) -> None:
        dom = self._lookup(instance_uuid)
        with self._errors("resume", instance_uuid):
            if dom.isActive():
                if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    dom.resume()
                return
            if not dom.hasManagedSaveImage(0):
                raise DriverError(f"Cannot resume instance {instance_uuid}: it is not suspended")
            dom.create()  # restores the managed save image
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:  # saved while paused
                dom.resume()

    def _require_running(self, dom, instance_uuid: str, action: str) -> None:
        if dom.state()[0] not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
            raise DriverError(f"Cannot {action} instance {instance_uuid}: it is {self._state_name(dom)}")

    @staticmethod
    def _state_name(dom) -> str:
        names = {libvirt.VIR_DOMAIN_NOSTATE: "in no state", libvirt.VIR_DOMAIN_RUNNING: "running",
                 libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
                 libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
                 libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by the guest"}
        try:
            return names.get(dom.state()[0], "in an unknown state")
        except libvirt.libvirtError:
            return "gone"

    # -- state and consoles ---------------------------------------------------------------------------------
    def get_info(self, instance_uuid: str) -> InstanceInfo:
        dom = self._lookup(instance_uuid)
        with self._errors("read the state of", instance_uuid):
            state, maxmem_kib, _mem, ncpu, cpu_time = dom.info()
            power = _POWER.get(state, PowerState.NOSTATE)
            if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
                power = PowerState.SUSPENDED
        return InstanceInfo(power_state=power, vcpus=ncpu, memory_mb=maxmem_kib // 1024, cpu_time_ns=cpu_time)

    def get_console_output(self, instance_uuid: str) -> str:
        self._lookup(instance_uuid)
        path = self._instance_dir(instance_uuid) / "console.log"
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - MAX_CONSOLE_BYTES))
                data = fh.read()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise HostLocalError(f"Cannot read the console log of instance {instance_uuid}: {exc}") from exc
        return data.decode("utf-8", errors="replace")

    def get_console(self, instance_uuid: str, kind: str) -> ConsoleEndpoint:
        if kind not in ("vnc", "spice", "serial"):
            raise DriverError(f"Unsupported console type {kind!r}")
        dom = self._lookup(instance_uuid)
        with self._errors(f"read the {kind} console of", instance_uuid):
            if not dom.isActive():
                raise DriverError(f"Instance {instance_uuid} is not running, so it has no {kind} console")
            xml = dom.XMLDesc(0)
        if kind == "serial":  # Nova's get_serial_console: the first port in bind mode
            found = next(iter(config.serial_listeners(xml)), None)
            if found is None:  # defined while serial consoles were off
                raise ConsoleUnavailable(kind)
        else:
            found = config.graphics_port(xml, kind)
        if found is None:
            raise DriverError(f"Instance {instance_uuid} has no {kind} console")
        listen, port = found
        return ConsoleEndpoint(host=console_endpoint_host(listen, self.settings, _host_ip), port=port, kind=kind)

    # -- rescue (drivers/libvirt/rescue.py) ----------------------------------------------------------------------
    def rescue(self, instance: InstanceSpec, rescue_image: ImageSpec | None) -> None:
        from drivers.libvirt import rescue
        with self._instance_lock(instance.uuid):
            rescue.rescue(self, instance, rescue_image)

    def unrescue(self, instance_uuid: str) -> None:
        from drivers.libvirt import rescue
        with self._instance_lock(instance_uuid):
            rescue.unrescue(self, instance_uuid)

    # -- resize on this host (drivers/libvirt/resize.py) ----------------------------------------------------------
    def migrate_disk_and_power_off(self, instance_uuid: str) -> None:
        from drivers.libvirt import resize
        with self._instance_lock(instance_uuid):
            resize.migrate_disk_and_power_off(self, instance_uuid)

    def finish_migration(self, instance: InstanceSpec, power_on: bool) -> None:
        from drivers.libvirt import resize
        with self._instance_lock(instance.uuid):
            resize.finish_migration(self, instance, power_on)

    def receive_migrated_disk(self, instance_uuid: str, fetch: Callable[[], str]) -> None:
        from drivers.libvirt import migrate_disk
        try:  # the directory first, so that the instance's lock serialises a redelivered step
            self._instance_dir(instance_uuid).mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise HostLocalError(f"Cannot make the directory of instance {instance_uuid}: {exc}") from exc
        with self._instance_lock(instance_uuid):
            migrate_disk.import_disk(self, instance_uuid, fetch)

    def confirm_migration(self, instance_uuid: str, dest_host: str) -> None:
        if dest_host != self.host:
            self.destroy(instance_uuid, destroy_disks=True)  # the old guest, its disks and its backup
            return
        from drivers.libvirt import resize
        with self._instance_lock(instance_uuid):
            resize.remove_backup(self, instance_uuid)

    def finish_revert_migration(self, instance_uuid: str, power_on: bool) -> None:
        from drivers.libvirt import resize
        with self._instance_lock(instance_uuid):
            resize.finish_revert_migration(self, instance_uuid, power_on)

    # -- diagnostics, crash dump, snapshot (Nova's get_instance_diagnostics, trigger_crash_dump, snapshot) ---------
    def get_diagnostics(self, instance_uuid: str) -> dict:
        from drivers.libvirt import diagnostics
        dom = self._lookup(instance_uuid)
        with self._errors("read the diagnostics of", instance_uuid):
            return diagnostics.diagnostics(dom, self.virt_type)

    def trigger_crash_dump(self, instance_uuid: str) -> None:
        """virDomainInjectNMI; Nova's messages for a hypervisor without NMIs and for a guest that is not running."""
        dom = self._lookup(instance_uuid)
        with self._errors("inject an NMI into", instance_uuid):
            try:
                dom.injectNMI(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    raise DriverError("Triggering crash dump is not supported") from exc
                if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                    raise DriverError(f"Instance {instance_uuid} is not running.") from exc
                raise

    def snapshot(self, instance_uuid: str, disk_format: str | None = None) -> BinaryIO:
        """Nova's cold snapshot, reduced: a running guest is paused (QEMU drains and flushes its disks when it
        stops) while qemu-img writes its disk and backing chain as one standalone image, then resumed; a stopped,
        paused or suspended guest's disk is copied as it is. The stream is an unlinked file in the instance
        directory (a worker killed meanwhile leaves it there for destroy): closing it frees the space."""
        inst_dir = self._instance_dir(instance_uuid)
        target = inst_dir / f"snapshot.{os.getpid()}.{threading.get_ident()}"
        with self._instance_lock(instance_uuid):
            dom = self._lookup(instance_uuid)
            with self._errors("snapshot", instance_uuid):
                paused_here = dom.isActive() and dom.state()[0] in (libvirt.VIR_DOMAIN_RUNNING,
                                                                    libvirt.VIR_DOMAIN_BLOCKED)
                if paused_here:
                    dom.suspend()
                try:
                    imagecache.extract(inst_dir / "disk", (disk_format or "qcow2").lower(), target,
                                       force_share=bool(dom.isActive()))
                finally:
                    if paused_here:
                        dom.resume()
        try:
            stream = open(target, "rb")
        except OSError as exc:
            raise HostLocalError(f"Cannot read the snapshot of instance {instance_uuid}: {exc}") from exc
        target.unlink(missing_ok=True)
        return stream


def _has_tags(instance: InstanceSpec) -> bool:
    return bool(instance.root_device_tag or (instance.network or {}).get("tag"))


def _host_traits() -> tuple[str, ...]:
    """This host's architecture and CPU flags as os-traits names, and the image formats the driver boots (a
    cached image keeps its format, raw or qcow2, under a qcow2 overlay)."""
    import platform
    traits = {f"HW_ARCH_{platform.machine().upper()}", "COMPUTE_IMAGE_TYPE_RAW", "COMPUTE_IMAGE_TYPE_QCOW2"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return tuple(sorted(traits))
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    traits.update(f"HW_CPU_X86_{flag.upper()}" for flag in flags)
    return tuple(sorted(traits))


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _host_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent; this picks the source address of the default route
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def make_driver(host: str, settings: Settings) -> LibvirtDriver:
    return LibvirtDriver(host, settings)


__all__ = ["LibvirtDriver", "make_driver", "UUID_RE"]
