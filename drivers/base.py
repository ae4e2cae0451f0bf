"""The compute driver contract (modelled on nova/virt/driver.py).

A driver manages the guests of ONE compute host. Compute tasks call it with plain data (``InstanceSpec``,
``ImageSpec``), never ORM objects, and turn its exceptions into instance faults through the conductor.

Every method must be idempotent: Celery delivers at least once, so a spawn retried after a worker crash must
find the guest it already made rather than make a second one, and a destroy of a guest that is already gone
succeeds.
"""
from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from core.power_state import PowerState

if TYPE_CHECKING:
    from pathlib import Path

    from core.settings import Settings


class DriverError(Exception):
    """A driver failure; the message becomes the instance fault's message."""
    #: True when another host might succeed (the scheduler then tries an alternate).
    reschedulable = False


class HostLocalError(DriverError):
    """A failure specific to this host (no room on disk, hypervisor refused): try an alternate host."""
    reschedulable = True


class DriverUnavailable(DriverError):
    """The hypervisor connection is down or was lost: the task is retried with backoff, not failed."""


class LiveMigrationAborted(DriverError):
    """live_migrate() ended because live_migration_abort() was called: the guest still runs on the source."""


class ConsoleUnavailable(DriverError):
    """The guest has no console of this type (Nova's ConsoleTypeUnavailable: the API answers 400)."""

    def __init__(self, kind: str):
        super().__init__(f"Unavailable console type {kind}.")


class InstanceNotFound(DriverError):
    def __init__(self, instance_uuid: str):
        super().__init__(f"Instance {instance_uuid} could not be found on this host.")
        self.instance_uuid = instance_uuid


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    id: str
    disk_format: str | None
    container_format: str | None
    size: int | None
    checksum: str | None
    properties: dict
    #: Local path of the image data, when it is known without fetching (tests); see data_path().
    path: str
    #: For kernel/ramdisk boot (image properties kernel_id / ramdisk_id / os_command_line, as in Nova).
    kernel: "ImageSpec | None" = None
    ramdisk: "ImageSpec | None" = None
    #: Fetches the data into this host's image cache (from the Image API) and returns its path.
    fetch: "Callable[[], str] | None" = dataclasses.field(default=None, compare=False, repr=False)

    def data_path(self) -> str:
        """Local path of the image's data on this host, downloaded on first use: drivers call this only when
        they need the data (a step that does not, or a driver cache hit, downloads nothing)."""
        return self.fetch() if self.fetch is not None else self.path


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    uuid: str
    name: str
    hostname: str
    project_id: str
    user_id: str
    vcpus: int
    memory_mb: int
    root_gb: int
    flavor_name: str
    flavor_id: str
    image: ImageSpec | None
    key_data: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    extra_specs: dict = dataclasses.field(default_factory=dict)
    #: The instance's NIC on the Stratus network, or None (networks "none"): {"address", "mac", "network_id",
    #: "network_name", "cidr", "gateway", "netmask", "prefixlen", "bridge"}.
    network: dict | None = None
    #: Files of the config drive (relative path -> bytes; drivers/configdrive.make_iso builds the ISO 9660
    #: volume "config-2" from them), or None without a config drive. Holds user data: never log or send it.
    config_drive_files: dict | None = dataclasses.field(default=None, repr=False)
    #: The device tag of the root disk (the image block device mapping's ``tag``, API 2.32/2.42+); the NIC's
    #: tag is ``network["tag"]``.
    root_device_tag: str | None = None


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    power_state: int
    vcpus: int = 0
    memory_mb: int = 0
    cpu_time_ns: int = 0


@dataclasses.dataclass(frozen=True)
class HostResources:
    hypervisor_hostname: str
    hypervisor_type: str
    hypervisor_version: int
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int = 0
    memory_mb_used: int = 0
    local_gb_used: int = 0
    host_ip: str | None = None
    # Placement traits the host truly has (os-traits names: HW_ARCH_X86_64, HW_CPU_X86_AVX2, ...); the conductor
    # keeps the standard ones.
    traits: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ConsoleEndpoint:
    """Where a proxy must connect for a console of an instance."""
    host: str
    port: int
    kind: str  # "vnc" | "spice" | "serial"


def console_address(settings: Settings) -> str:
    """Where the console proxies connect for this host's guests: console_proxyclient_address, else my_ip, else
    127.0.0.1 (proxies and guests on one machine, Nova's default)."""
    return settings.console_proxyclient_address or settings.my_ip or "127.0.0.1"


def console_listen(settings: Settings) -> str:
    """The address a guest's VNC/SPICE server listens on: libvirt_console_listen, else the proxies' address."""
    return settings.libvirt_console_listen or console_address(settings)


def console_endpoint_host(listen: str, settings: Settings, detected: Callable[[], str]) -> str:
    """The host of a console endpoint whose server listens on ``listen`` (the live domain's address): an
    explicit console_proxyclient_address wins (NAT); a wildcard listen is reached at my_ip, else at
    ``detected()`` (this host's own address); a specific address is reached there."""
    if settings.console_proxyclient_address:
        return settings.console_proxyclient_address
    if listen in ("0.0.0.0", "::", ""):
        return settings.my_ip or detected()
    return listen


class ComputeDriver(abc.ABC):
    #: What this driver can do; the API answers 409/501 for actions a driver lacks.
    capabilities: ClassVar[dict[str, bool]] = {
        "supports_pause": False,
        "supports_suspend": False,
        "supports_console_output": False,
        "supports_vnc_console": False,
        "supports_spice_console": False,
        "supports_serial_console": False,
        # resize/migrate can move the guest's disks to another host (not only resize it in place)
        "supports_migrate_to_other_host": False,
    }

    def __init__(self, host: str):
        self.host = host

    def init_host(self) -> None:
        """Called once when the compute worker starts, before any other call. May raise DriverError."""

    @abc.abstractmethod
    def get_available_resource(self) -> HostResources:
        """Return the host's total inventory and current usage as the hypervisor sees it."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Return the UUIDs of all guests this driver manages on the host, in any power state."""

    def list_disks(self) -> list[str]:
        """Return the UUIDs that have local storage on this host, with or without a guest (a build cut short
        leaves a disk and no guest). Used by the start-up reconciliation to find leftovers."""
        return []

    def get_host_uptime(self) -> str:
        """The host's ``uptime`` line (Nova's driver method, shown by GET /os-hypervisors/{id}/uptime); see
        uptime_line."""
        raise NotImplementedError

    @abc.abstractmethod
    def build_disk(self, instance: InstanceSpec) -> None:
        """Prepare the guest's storage from ``instance.image``.

        Post: the disk exists. Calling it again for the same instance does nothing.
        """

    @abc.abstractmethod
    def spawn(self, instance: InstanceSpec) -> None:
        """Create and start the guest. Pre: build_disk succeeded. Post: get_info() is RUNNING.

        If the guest already exists (a retried task), make sure it runs and return.
        On failure, leave nothing behind but the disk (destroy() removes that).
        """

    @abc.abstractmethod
    def destroy(self, instance_uuid: str, destroy_disks: bool = True) -> None:
        """Stop and remove the guest and, if asked, its disks. A missing guest is not an error."""

    @abc.abstractmethod
    def get_info(self, instance_uuid: str) -> InstanceInfo:
        """Return the guest's power state. Raises InstanceNotFound."""

    @abc.abstractmethod
    def power_off(self, instance_uuid: str, timeout: int = 0) -> None:
        """Stop the guest: ask it to shut down for up to ``timeout`` s, then force it off. Idempotent."""

    @abc.abstractmethod
    def power_on(self, instance_uuid: str) -> None:
        """Start a stopped guest. Idempotent."""

    @abc.abstractmethod
    def reboot(self, instance_uuid: str, reboot_type: str = "SOFT") -> None:
        """SOFT: ask the guest to reboot, falling back to HARD after a timeout. HARD: reset."""

    def pause(self, instance_uuid: str) -> None:
        raise NotImplementedError

    def unpause(self, instance_uuid: str) -> None:
        raise NotImplementedError

    def suspend(self, instance_uuid: str) -> None:
        raise NotImplementedError

    def resume(self, instance_uuid: str) -> None:
        raise NotImplementedError

    def get_console_output(self, instance_uuid: str) -> str:
        raise NotImplementedError

    def get_console(self, instance_uuid: str, kind: str) -> ConsoleEndpoint:
        """Where the running guest's ``kind`` console ("vnc", "spice": its graphics server; "serial": its first
        serial port as a raw TCP listener) accepts a proxy's connection. Raises ConsoleUnavailable when the guest
        has none of that type, for drivers whose capabilities say they support the type."""
        raise NotImplementedError

    # --- further server actions (tasks/compute_actions.py). Drivers without them raise NotImplementedError;
    # the compute step turns that into an instance fault naming the driver and the action.

    def rescue(self, instance: InstanceSpec, rescue_image: ImageSpec | None) -> None:
        """Boot the guest from ``rescue_image`` (default: its own image) with its own disk attached second.
        Post: get_info() is RUNNING. Calling it again on a rescued guest does nothing."""
        raise NotImplementedError

    def unrescue(self, instance_uuid: str) -> None:
        """Return a rescued guest to its own disk, running. Idempotent."""
        raise NotImplementedError

    def snapshot(self, instance_uuid: str, disk_format: str | None = None) -> BinaryIO:
        """Return a readable stream of the guest's root disk as a standalone image in ``disk_format`` (the
        snapshot image's Glance disk_format; None: the driver's own), leaving the guest in its power state.
        The caller closes it."""
        raise NotImplementedError

    def trigger_crash_dump(self, instance_uuid: str) -> None:
        """Inject an NMI into the running guest (the guest OS decides whether to dump)."""
        raise NotImplementedError

    def get_diagnostics(self, instance_uuid: str) -> dict:
        """The guest's diagnostics in Nova's standard format (API 2.48): state, driver, hypervisor,
        hypervisor_os, uptime, config_drive, num_cpus, num_nics, num_disks, memory_details, cpu_details,
        nic_details, disk_details."""
        raise NotImplementedError

    # --- moves between hosts (tasks/conductor/moves.py) -------------------------------------------------------

    def migrate_disk_and_power_off(self, instance_uuid: str) -> None:
        """Resize/cold migration, on the source: stop the guest and keep it (and its disk) for a revert. The
        destination may be this same host (resize with allow_resize_to_same_host)."""
        raise NotImplementedError

    def receive_migrated_disk(self, instance_uuid: str, fetch: Callable[[], str]) -> None:
        """Cold migration / resize to this host by a driver whose capability ``moves_disk_through_image_api`` is
        set: make the disk the source uploaded (``fetch()`` downloads it, checksum-verified, and gives its local
        path) the guest's disk here, before finish_migration. Idempotent."""
        raise NotImplementedError

    def finish_migration(self, instance: InstanceSpec, power_on: bool) -> None:
        """Resize/cold migration, on the destination: create the guest with the (new) flavor of ``instance``;
        running if ``power_on``. On the source host itself (same-host resize) the guest becomes the new one
        while what migrate_disk_and_power_off kept stays for a revert. Idempotent."""
        raise NotImplementedError

    def finish_revert_migration(self, instance_uuid: str, power_on: bool) -> None:
        """Revert, on the source: bring back the guest migrate_disk_and_power_off kept (on a same-host resize it
        replaces the resized guest, whose destination step is skipped)."""
        raise NotImplementedError

    def confirm_migration(self, instance_uuid: str, dest_host: str) -> None:
        """Confirm, on the source: drop what migrate_disk_and_power_off kept. The guest moved to ``dest_host``;
        if that is this host (same-host resize) the resized guest stays and a driver that supports it must
        override this; else the old guest goes."""
        if dest_host == self.host:
            raise NotImplementedError
        self.destroy(instance_uuid, destroy_disks=True)

    def instance_storage_dir(self) -> Path | None:
        """Where this host keeps its guests' disks, for the shared storage test before a live migration
        (drivers/shared_storage.py; None: no other host sees it)."""
        return None

    def pre_live_migration(self, instance: InstanceSpec) -> dict:
        """On the destination, before the copy (Nova's pre_live_migration): make what the guest needs here and
        the copy does not bring (instance dir, the image in the cache, empty disks of the right size, the config
        drive). Returns the destination's migrate data for the source's live_migrate (paths, addresses; no
        secrets). Idempotent."""
        return {}

    def live_migrate(self, instance_uuid: str, dest_host: str,
                     on_started: Callable[[], None] | None = None, migrate_data: dict | None = None) -> dict | None:
        """Move the running guest to ``dest_host`` (a host of the same driver, prepared by its pre_live_migration,
        whose result is ``migrate_data``) without stopping it; blocks until the guest runs there and this host
        dropped it. ``on_started`` is called once the transfer is under way (from then on live_migration_abort /
        live_migration_force_complete act on it). Raises LiveMigrationAborted when aborted (the guest keeps
        running here). Called again after the guest arrived, it returns at once. Returns data for the
        destination's post_live_migration_at_destination (or None)."""
        raise NotImplementedError

    def post_live_migration_at_destination(self, instance: InstanceSpec, migrate_data: dict | None) -> None:
        """On the destination once the guest arrived (``migrate_data``: what the source's live_migrate returned)."""

    def rollback_live_migration_at_destination(self, instance_uuid: str, destroy_disks: bool = True) -> None:
        """On the destination after an aborted or failed copy: remove what pre_live_migration made, unless the
        guest runs here. On shared instance storage (no block migration) the disks are the source's guest's:
        they stay (Nova's destroy_disks=not is_shared_instance_path)."""
        try:
            if self.get_info(instance_uuid).power_state in (PowerState.RUNNING, PowerState.PAUSED):
                return
        except InstanceNotFound:
            pass
        self.destroy(instance_uuid, destroy_disks=destroy_disks)

    def live_migration_force_complete(self, instance_uuid: str) -> None:
        """Make the running live migration of the guest finish now (libvirt: switch to post-copy or pause the
        guest so the copy converges). DriverError if no live migration of it runs on this host."""
        raise NotImplementedError

    def live_migration_abort(self, instance_uuid: str) -> None:
        """Cancel the running live migration of the guest: live_migrate() raises LiveMigrationAborted and the
        guest keeps running here. DriverError if no live migration of it runs on this host."""
        raise NotImplementedError

    def device_metadata(self, instance: InstanceSpec) -> list[dict]:
        """The guest's tagged devices (Nova's _build_device_metadata), called after spawn() and only when the
        NIC or the root disk has a tag: ``{"type": "nic", "mac", "tags", "bus", "address"}`` and
        ``{"type": "disk", "serial", "tags", "bus", "address"}``, untagged devices left out. ``bus`` is "pci",
        "scsi", "ide" or "usb" and ``address`` the hypervisor's address on it (PCI: "0000:00:03.0"); this
        default knows neither (None: the guest sees "none"), for drivers whose hypervisor does not say."""
        return tagged_devices(instance, {})

    def cache_image(self, image: ImageSpec) -> None:
        """Put the image into this host's image cache ahead of any boot (os-aggregates images, 2.81)."""
        raise NotImplementedError


def tagged_devices(instance: InstanceSpec, buses: dict[str, tuple[str | None, str | None]]) -> list[dict]:
    """The instance's tagged NIC and root disk, each with its (bus, address) from ``buses`` (keys: the NIC's
    MAC, "root" for the root disk). The root disk's serial is its volume id in Nova: None for an image disk."""
    devices: list[dict] = []
    net = instance.network or {}
    if net.get("tag"):
        bus, address = buses.get(net["mac"], (None, None))
        devices.append({"type": "nic", "mac": net["mac"], "tags": [net["tag"]], "bus": bus, "address": address})
    if instance.root_device_tag:
        bus, address = buses.get("root", (None, None))
        devices.append({"type": "disk", "serial": None, "tags": [instance.root_device_tag], "bus": bus,
                        "address": address})
    return devices


def uptime_line(now: float, up_seconds: float, load: tuple[float, float, float], users: int = 0) -> str:
    """What ``uptime`` prints (procps), which Nova's libvirt driver returns as the host's uptime:
    `` 08:32:11 up 93 days, 18:25,  0 users,  load average: 0.20, 0.12, 0.14``."""
    minutes = int(up_seconds // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    up = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    up += f"{hours:2d}:{mins:02d}" if hours else f"{mins} min"
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    return (f" {clock} up {up},  {users} user{'s' if users != 1 else ''},  load average: "
            f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
