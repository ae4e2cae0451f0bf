"""A first-class in-memory driver (nova/virt/fake.py is the model).

It keeps guests in a per-process registry keyed by host, so one worker process can serve many fake hosts.
Failures can be injected through instance metadata, which lets functional tests drive the error paths:
``fake:fail_spawn`` / ``fake:fail_build_disk`` with a message as the value.

With a ``state_dir`` each guest is also a JSON file there (``<uuid>.json``), so guests outlive the worker
process the way real guests outlive nova-compute, and a worker killed mid-step leaves what a real one would:
a disk still ``building``, or a guest not yet ``spawned``. ``build_disk_delay`` / ``spawn_delay`` make the
steps take that long (tests kill workers inside them); ``live_migration_seconds`` is how long a live migration
copies (a window in which it can be aborted or forced to complete).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import BinaryIO

from core.power_state import PowerState
from drivers import fake_console, fake_serial, serial_ports
from drivers.base import ComputeDriver, ConsoleEndpoint, DriverError, HostLocalError, HostResources, ImageSpec, InstanceInfo, InstanceNotFound, InstanceSpec, LiveMigrationAborted, tagged_devices, uptime_line

_lock = threading.Lock()
_guests: dict[str, dict[str, dict]] = {}  # host -> uuid -> guest record
_live_jobs: dict[str, dict[str, dict]] = {}  # source host -> uuid -> running live migration (in memory only)
_PROCESS_ID = uuid.uuid4().hex  # tells a destination served by this worker process from another's


def _arrived(host: str, instance_uuid: str) -> bool:
    guest = _guests.get(host, {}).get(instance_uuid)
    return guest is not None and not guest.get("incoming")


class FakeDriver(ComputeDriver):
    capabilities = {
        "supports_pause": True,
        "supports_suspend": True,
        "supports_console_output": True,
        "supports_vnc_console": True,
        "supports_spice_console": True,
        "supports_serial_console": True,
        "supports_migrate_to_other_host": True,
    }

    def __init__(self, host: str, vcpus: int = 16, memory_mb: int = 32768, local_gb: int = 512,
                 state_dir: Path | None = None, build_disk_delay: float = 0.0, spawn_delay: float = 0.0,
                 live_migration_seconds: float = 0.0, host_ip: str = "127.0.0.1",
                 console_address: str = "127.0.0.1", console_port: int = 5900,
                 serial_port_range: str = serial_ports.DEFAULT_RANGE):
        super().__init__(host)
        self.host_ip, self.console_address, self.console_port = host_ip, console_address, console_port
        self.vcpus, self.memory_mb, self.local_gb = vcpus, memory_mb, local_gb
        self.state_dir = Path(state_dir) if state_dir else None
        self.build_disk_delay, self.spawn_delay = build_disk_delay, spawn_delay
        self.live_migration_seconds = live_migration_seconds
        self.serial_port_range = serial_port_range
        self.cached_images: set[str] = set()
        self.clock: Callable[[], float] = time.time  # the guests' clock (tests move it)
        self.started_at = time.time()
        with _lock:
            fresh = host not in _guests
            self._guests = _guests.setdefault(host, {})
            self._jobs = _live_jobs.setdefault(host, {})
            if fresh and self.state_dir is not None:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                for path in self.state_dir.glob("*.json"):
                    try:
                        self._guests[path.stem] = json.loads(path.read_text())
                    except (OSError, ValueError):  # a file cut short by a kill: its guest never got further
                        self._guests[path.stem] = {"power_state": PowerState.NOSTATE, "vcpus": 0, "memory_mb": 0,
                                                   "root_gb": 0, "console": [], "spawned": False, "disk": "building"}

    def _save(self, instance_uuid: str, host: str | None = None) -> None:
        """Write one guest's record (call with _lock held); atomic, so a kill leaves the old or the new one."""
        if self.state_dir is None:
            return
        host = host or self.host
        guest = _guests.get(host, {}).get(instance_uuid)
        folder = self.state_dir if host == self.host else self.state_dir.parent / host
        path = folder / f"{instance_uuid}.json"
        if guest is None:
            path.unlink(missing_ok=True)
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{instance_uuid}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(guest))
        os.replace(tmp, path)

    def _guest(self, instance_uuid: str) -> dict:
        try:
            return self._guests[instance_uuid]
        except KeyError:
            raise InstanceNotFound(instance_uuid) from None

    def get_host_uptime(self) -> str:
        """The fake host has been up since its driver started, idle."""
        now = time.time()
        return uptime_line(now, now - self.started_at, (0.0, 0.0, 0.0))

    def get_available_resource(self) -> HostResources:
        with _lock:
            guests = list(self._guests.values())
        return HostResources(
            hypervisor_hostname=self.host, hypervisor_type="fake", hypervisor_version=1000,
            vcpus=self.vcpus, memory_mb=self.memory_mb, local_gb=self.local_gb,
            vcpus_used=sum(g["vcpus"] for g in guests), memory_mb_used=sum(g["memory_mb"] for g in guests),
            local_gb_used=sum(g["root_gb"] for g in guests), host_ip=self.host_ip)

    def list_instances(self) -> list[str]:
        with _lock:
            return [u for u, g in self._guests.items() if g.get("spawned")]

    def list_disks(self) -> list[str]:
        with _lock:
            return list(self._guests)

    def build_disk(self, instance: InstanceSpec) -> None:
        if "fake:fail_build_disk" in instance.metadata:
            raise HostLocalError(instance.metadata["fake:fail_build_disk"] or "injected build_disk failure")
        if instance.image is None:
            raise DriverError("Fake driver needs an image to build a disk")
        with _lock:
            known = instance.uuid in self._guests
        disk = None if known else self._disk_of(instance)  # may download the image: not under the lock
        with _lock:
            guest = self._guests.get(instance.uuid)
            if guest is None:
                guest = self._guests[instance.uuid] = {
                    "power_state": PowerState.NOSTATE, "vcpus": instance.vcpus, "memory_mb": instance.memory_mb,
                    "root_gb": instance.root_gb, "console": [], "spawned": False, "disk": "building",
                    "image_path": disk if disk is not None else self._disk_of(instance)}
            if guest.get("disk", "ready") == "ready":
                return
            guest.update(vcpus=instance.vcpus, memory_mb=instance.memory_mb, root_gb=instance.root_gb)
            self._save(instance.uuid)
        time.sleep(self.build_disk_delay)  # "copying the image"
        with _lock:
            guest = self._guest(instance.uuid)
            guest["disk"] = "ready"
            self._save(instance.uuid)

    def spawn(self, instance: InstanceSpec) -> None:
        if "fake:fail_spawn" in instance.metadata:
            raise HostLocalError(instance.metadata["fake:fail_spawn"] or "injected spawn failure")
        with _lock:
            guest = self._guest(instance.uuid)
            if guest.get("disk", "ready") != "ready":
                raise DriverError(f"The disk of {instance.uuid} is not built")
            if not guest["spawned"] and self.spawn_delay:
                guest["spawning"] = True
                self._save(instance.uuid)
        if not guest["spawned"]:
            time.sleep(self.spawn_delay)  # "the guest boots"
        with _lock:
            guest = self._guest(instance.uuid)
            if not guest["spawned"]:
                if instance.config_drive_files is not None:
                    # Recorded, not built: the file list shows what a real driver would put on the ISO.
                    guest["config_drive"] = sorted(instance.config_drive_files)
                now = self.clock()
                guest.update(console_started=now, boot_log=fake_console.boot_log(instance, now))
            guest.update(spawned=True, spawning=False, power_state=PowerState.RUNNING, started=time.time(),
                         config_drive_attached=instance.config_drive_files is not None,
                         nics=[instance.network["mac"]] if instance.network else [])
            guest.setdefault("pci", _pci_slots(instance))
            self._save(instance.uuid)

    def device_metadata(self, instance: InstanceSpec) -> list[dict]:
        """The tagged devices at the PCI addresses the fake gave its guest at spawn."""
        with _lock:
            pci = dict(self._guest(instance.uuid).get("pci") or {})
        return tagged_devices(instance, {key: ("pci", address) for key, address in pci.items()})

    def _disk_of(self, instance: InstanceSpec) -> str:
        """The guest's "disk": with a state_dir a hard link to (or copy of) its image's data, so it outlives the
        image as a real disk does (unshelve deletes the snapshot it booted from); else the image file itself."""
        image_path = Path(instance.image.data_path())
        if self.state_dir is None:
            return str(image_path)
        if not image_path.exists():  # as a real driver: a disk is made of the image's data, which must be here
            raise DriverError(f"Image {instance.image.id} has no data on this host at {image_path}")
        disk = self.state_dir / "disks" / f"{instance.uuid}-{instance.image.id}"
        disk.parent.mkdir(parents=True, exist_ok=True)
        if not disk.exists():
            try:
                os.link(image_path, disk)
            except OSError:
                shutil.copyfile(image_path, disk)
        return str(disk)

    def destroy(self, instance_uuid: str, destroy_disks: bool = True) -> None:
        fake_serial.close_port(f"{self.host}/{instance_uuid}")
        with _lock:
            guest = self._guests.pop(instance_uuid, None)
            self._save(instance_uuid)
        if destroy_disks:
            self._drop_disk((guest or {}).get("image_path"))

    def _drop_disk(self, disk: str | None) -> None:
        """Remove a guest's disk file of this host's state dir, unless a guest still uses it."""
        with _lock:
            in_use = any(g.get("image_path") == disk for host in _guests.values() for g in host.values())
            if disk and self.state_dir is not None and not in_use and Path(disk).parent == self.state_dir / "disks":
                Path(disk).unlink(missing_ok=True)

    def get_info(self, instance_uuid: str) -> InstanceInfo:
        with _lock:
            g = self._guest(instance_uuid)
            return InstanceInfo(power_state=g["power_state"], vcpus=g["vcpus"], memory_mb=g["memory_mb"])

    def _set_power(self, instance_uuid: str, state: int, line: str, require: tuple[int, ...] = ()) -> None:
        with _lock:
            guest = self._guest(instance_uuid)
            if require and guest["power_state"] not in require and guest["power_state"] != state:
                raise DriverError(f"Instance {instance_uuid} is in power state {guest['power_state']}")
            guest["power_state"] = state
            self._log(guest, line)
            self._save(instance_uuid)

    def power_off(self, instance_uuid: str, timeout: int = 0) -> None:
        self._set_power(instance_uuid, PowerState.SHUTDOWN, "fake guest powered off")

    def power_on(self, instance_uuid: str) -> None:
        self._set_power(instance_uuid, PowerState.RUNNING, "fake guest powered on")

    def reboot(self, instance_uuid: str, reboot_type: str = "SOFT") -> None:
        self._set_power(instance_uuid, PowerState.RUNNING, f"fake guest rebooted ({reboot_type.lower()})",
                        require=(PowerState.RUNNING, PowerState.SHUTDOWN, PowerState.CRASHED))

    def pause(self, instance_uuid: str) -> None:
        self._set_power(instance_uuid, PowerState.PAUSED, "fake guest paused", require=(PowerState.RUNNING,))

    def unpause(self, instance_uuid: str) -> None:
        self._set_power(instance_uuid, PowerState.RUNNING, "fake guest unpaused", require=(PowerState.PAUSED,))

    def suspend(self, instance_uuid: str) -> None:
        self._set_power(instance_uuid, PowerState.SUSPENDED, "fake guest suspended", require=(PowerState.RUNNING,))

    def resume(self, instance_uuid: str) -> None:
        self._set_power(instance_uuid, PowerState.RUNNING, "fake guest resumed", require=(PowerState.SUSPENDED,))

    def _log(self, guest: dict, line: str) -> None:
        """Add a line to the guest's console at this moment (call with _lock held)."""
        guest["console"].append([round(self.clock() - guest.get("console_started", self.clock()), 6), line])

    def get_console_output(self, instance_uuid: str) -> str:
        with _lock:
            guest = self._guest(instance_uuid)
            boot, events = list(guest.get("boot_log", [])), list(guest["console"])
            elapsed = self.clock() - guest.get("console_started", self.clock())
        return fake_console.render(boot, events, elapsed)

    def get_console(self, instance_uuid: str, kind: str) -> ConsoleEndpoint:
        with _lock:
            self._guest(instance_uuid)
        if kind == "serial":  # a real listener serving the console log (drivers/fake_serial.py)
            port = fake_serial.open_port(f"{self.host}/{instance_uuid}", self.serial_port_range,
                                         lambda: self.get_console_output(instance_uuid))
            return ConsoleEndpoint(host=fake_serial.ADDRESS, port=port, kind=kind)
        return ConsoleEndpoint(host=self.console_address, port=self.console_port, kind=kind)

    def rescue(self, instance: InstanceSpec, rescue_image: ImageSpec | None) -> None:
        with _lock:
            guest = self._guest(instance.uuid)
            if guest.get("rescued"):
                return
            image = rescue_image or instance.image
            guest.update(rescued=True, power_state=PowerState.RUNNING)
            self._log(guest, f"fake guest rescued from image {image.id if image else 'none'}")
            self._save(instance.uuid)

    def unrescue(self, instance_uuid: str) -> None:
        with _lock:
            guest = self._guest(instance_uuid)
            if guest.pop("rescued", False):
                self._log(guest, "fake guest unrescued")
            guest["power_state"] = PowerState.RUNNING
            self._save(instance_uuid)

    def snapshot(self, instance_uuid: str, disk_format: str | None = None) -> BinaryIO:
        """The fake disk is the image it was built from, so its snapshot is that image's data (in its format)."""
        with _lock:
            guest = self._guest(instance_uuid)
            self._log(guest, "fake guest snapshot taken")
            path = guest.get("image_path")
        try:
            return open(path, "rb") if path else io.BytesIO(b"")
        except FileNotFoundError:
            raise DriverError(f"The disk of instance {instance_uuid} is gone (its image was removed)") from None

    def trigger_crash_dump(self, instance_uuid: str) -> None:
        with _lock:
            guest = self._guest(instance_uuid)
            if guest["power_state"] != PowerState.RUNNING:
                raise DriverError(f"Instance {instance_uuid} is not running")
            self._log(guest, "fake guest received an NMI (crash dump)")
            self._save(instance_uuid)

    def get_diagnostics(self, instance_uuid: str) -> dict:
        with _lock:
            g = dict(self._guest(instance_uuid))
        running = g["power_state"] == PowerState.RUNNING
        uptime = int(time.time() - g.get("started", time.time())) if running else 0
        return {
            "state": {PowerState.RUNNING: "running", PowerState.PAUSED: "paused", PowerState.SHUTDOWN: "shutdown",
                      PowerState.SUSPENDED: "suspended"}.get(g["power_state"], "pending"),
            # Nova's enumeration has no "fake": its own fake driver reports driver "libvirt" (nova/virt/fake.py)
            "driver": "libvirt", "hypervisor": "fake", "hypervisor_os": "fake-os", "uptime": uptime,
            "config_drive": bool(g.get("config_drive_attached")), "num_cpus": g["vcpus"],
            "num_nics": len(g.get("nics", [])), "num_disks": 1,
            "memory_details": {"maximum": g["memory_mb"], "used": g["memory_mb"] if running else 0},
            "cpu_details": [{"id": i, "time": uptime * 10**9, "utilisation": None} for i in range(g["vcpus"])],
            "nic_details": [{"mac_address": mac, "rx_octets": 0, "rx_errors": 0, "rx_drop": 0, "rx_packets": 0,
                             "rx_rate": None, "tx_octets": 0, "tx_errors": 0, "tx_drop": 0, "tx_packets": 0,
                             "tx_rate": None} for mac in g.get("nics", [])],
            "disk_details": [{"read_bytes": 0, "read_requests": 0, "write_bytes": 0, "write_requests": 0,
                              "errors_count": 0}],
        }

    def migrate_disk_and_power_off(self, instance_uuid: str) -> None:
        """Keeps the guest's flavor in ``resize_backup`` (a same-host resize changes the record in place)."""
        with _lock:
            guest = self._guest(instance_uuid)
            if "resize_backup" not in guest:
                guest["resize_backup"] = {k: guest[k] for k in ("vcpus", "memory_mb", "root_gb")}
                self._log(guest, "fake guest powered off for migration")
            guest.update(power_state=PowerState.SHUTDOWN, migrating=True)
            self._save(instance_uuid)

    def finish_migration(self, instance: InstanceSpec, power_on: bool) -> None:
        self.build_disk(instance)
        self.spawn(instance)
        with _lock:
            guest = self._guest(instance.uuid)
            guest.update(vcpus=instance.vcpus, memory_mb=instance.memory_mb, root_gb=instance.root_gb)
            self._log(guest, f"fake guest migrated in with flavor {instance.flavor_name}")
            if not power_on:
                guest["power_state"] = PowerState.SHUTDOWN
            self._save(instance.uuid)

    def finish_revert_migration(self, instance_uuid: str, power_on: bool) -> None:
        with _lock:
            guest = self._guest(instance_uuid)
            guest.pop("migrating", None)
            guest.update(guest.pop("resize_backup", {}))
            guest["power_state"] = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
            self._log(guest, "fake guest migration reverted")
            self._save(instance_uuid)

    def confirm_migration(self, instance_uuid: str, dest_host: str) -> None:
        if dest_host != self.host:
            self.destroy(instance_uuid, destroy_disks=True)
            return
        with _lock:
            guest = self._guest(instance_uuid)
            if guest.pop("resize_backup", None) is not None:
                guest.pop("migrating", None)
                self._log(guest, "fake guest resize confirmed")
                self._save(instance_uuid)

    def cache_image(self, image: ImageSpec) -> None:
        """The fake "cache" is the set of image ids whose data this host has read once."""
        try:
            with open(image.data_path(), "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise DriverError(f"Cannot cache image {image.id}: {exc}") from exc
        with _lock:
            self.cached_images.add(image.id)

    def instance_storage_dir(self) -> Path | None:
        """A fake host's storage is its state_dir: hosts given the same one share it; without one each host's
        guests live in this process's memory under its own name, which no other host sees (never shared)."""
        return self.state_dir

    def pre_live_migration(self, instance: InstanceSpec) -> dict:
        """The arriving guest's disk is built here from its image (through this host's image cache); its record
        waits, not spawned, for the copy. The migrate data names this worker process, so a source served by the
        same process moves the record itself and another process's source hands it over in the message."""
        self.build_disk(instance)
        with _lock:
            guest = self._guest(instance.uuid)
            if not guest.get("spawned"):
                guest["incoming"] = True
                self._save(instance.uuid)
        return {"fake_process": _PROCESS_ID, "pid": os.getpid()}

    def live_migrate(self, instance_uuid: str, dest_host: str, on_started: Callable[[], None] | None = None,
                     migrate_data: dict | None = None) -> dict | None:
        """Fake hosts of one worker process share the registry, so the guest record moves between them; to a
        host of another worker process (``migrate_data`` from its pre_live_migration names it) the record goes
        in the returned data and the destination's post_live_migration_at_destination takes it in. The copy
        takes ``live_migration_seconds``, in steps that look at the job's abort / force-complete marks."""
        local = not migrate_data or (migrate_data.get("fake_process"), migrate_data.get("pid")) == (
            _PROCESS_ID, os.getpid())
        with _lock:
            if local and dest_host not in _guests:
                raise DriverError(f"Fake host {dest_host} is not served by this compute worker process")
            if instance_uuid not in self._guests and (not local or _arrived(dest_host, instance_uuid)):
                return None  # a retried task: the guest already left
            guest = self._guest(instance_uuid)
            if guest["power_state"] not in (PowerState.RUNNING, PowerState.PAUSED):
                raise DriverError(f"Instance {instance_uuid} is not running")
            job = {"dest": dest_host, "abort": False, "force_complete": False}
            self._jobs[instance_uuid] = job
        deadline = time.monotonic() + self.live_migration_seconds
        try:
            if on_started is not None:
                on_started()
            while not job["force_complete"] and not job["abort"] and time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            with _lock:
                if self._guests.get(instance_uuid) is not guest:
                    raise InstanceNotFound(instance_uuid)  # destroyed meanwhile
                if job["abort"]:
                    self._log(guest, f"fake guest live migration to {dest_host} aborted")
                    self._save(instance_uuid)
                    raise LiveMigrationAborted(f"Live migration of {instance_uuid} to {dest_host} was aborted")
                how = " (forced to complete)" if job["force_complete"] else ""
                self._log(guest, f"fake guest live-migrated from {self.host} to {dest_host}{how}")
                moved = self._guests.pop(instance_uuid)
                source_disk = moved.get("image_path")
                self._save(instance_uuid)
                if local:
                    arriving = _guests[dest_host].get(instance_uuid) or {}
                    moved["image_path"] = arriving.get("image_path", moved.get("image_path"))
                    _guests[dest_host][instance_uuid] = moved
                    self._save(instance_uuid, dest_host)
            self._drop_disk(source_disk)
            fake_serial.close_port(f"{self.host}/{instance_uuid}")  # the destination opens its own
        finally:
            with _lock:
                self._jobs.pop(instance_uuid, None)
        return None if local else {"fake_guest": {k: v for k, v in moved.items() if k != "image_path"}}

    def post_live_migration_at_destination(self, instance: InstanceSpec, migrate_data: dict | None) -> None:
        """A guest from another worker process: its record (power state, console, devices) comes in the data
        the source returned; the disk is the one pre_live_migration built here."""
        record = (migrate_data or {}).get("fake_guest")
        with _lock:
            guest = self._guest(instance.uuid)
            if record is not None and guest.get("incoming"):
                guest.update({**record, "image_path": guest.get("image_path"), "disk": "ready"})
            guest.pop("incoming", None)
            self._save(instance.uuid)

    def _job(self, instance_uuid: str) -> dict:
        job = self._jobs.get(instance_uuid)
        if job is None:
            raise DriverError(f"No live migration of instance {instance_uuid} is in progress on {self.host}")
        return job

    def live_migration_force_complete(self, instance_uuid: str) -> None:
        with _lock:
            self._job(instance_uuid)["force_complete"] = True

    def live_migration_abort(self, instance_uuid: str) -> None:
        with _lock:
            self._job(instance_uuid)["abort"] = True

    # Test helper: change a guest's power state "behind Stratus's back".
    def set_power_state_externally(self, instance_uuid: str, state: int) -> None:
        with _lock:
            self._guest(instance_uuid)["power_state"] = state
            self._save(instance_uuid)

    def wait_until(self, instance_uuid: str, state: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get_info(instance_uuid).power_state == state:
                    return True
            except InstanceNotFound:
                pass
            time.sleep(0.01)
        return False


def _pci_slots(instance: InstanceSpec) -> dict[str, str]:
    """PCI addresses in a libvirt-like order from slot 3: the root disk, the config drive, then the NIC."""
    keys = ["root"] + (["config"] if instance.config_drive_files is not None else []) + \
        ([instance.network["mac"]] if instance.network else [])
    return {key: f"0000:00:{slot:02x}.0" for slot, key in enumerate(keys, start=3)}
