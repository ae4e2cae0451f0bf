"""The libvirt driver against a real libvirtd + QEMU, booting the busybox test guest (tools/build-test-image).

Observations of hypervisor state are made with ``virsh`` where it matters (domain state, existence), not only
through the driver. Guests run under TCG here (nested KVM does not boot guests on this machine kind).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from core import metadata_docs
from core.power_state import PowerState
from core.settings import Settings
from drivers import load_driver
from drivers.base import DriverError, ImageSpec, InstanceNotFound, InstanceSpec
from tests.libvirt_support import URI, require_test_image, virsh as _virsh

pytestmark = pytest.mark.libvirt

MARKER = re.compile(r"STRATUS-GUEST-UP hostname=(\S+) uuid=(\S*) boot=(\d+)")
BOOT_TIMEOUT = 90  # generous: two TCG guests on two cores, under CI load


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - Glance's checksum is md5


@pytest.fixture(scope="session")
def test_image() -> Path:
    return require_test_image()


@pytest.fixture(scope="session")
def image(test_image: Path) -> ImageSpec:
    def part(name: str, fmt: str) -> ImageSpec:
        path = test_image / name
        return ImageSpec(id=f"stratus-test-{name.replace('.', '-')}-{_md5(path)[:8]}", disk_format=fmt,
                         container_format=fmt, size=path.stat().st_size, checksum=_md5(path), properties={},
                         path=str(path))
    disk = part("disk.qcow2", "qcow2")
    cmdline = (test_image / "cmdline").read_text().strip()
    return ImageSpec(id=disk.id, disk_format="qcow2", container_format="bare", size=disk.size,
                     checksum=disk.checksum, properties={"os_command_line": cmdline}, path=disk.path,
                     kernel=part("vmlinuz", "aki"), ramdisk=part("initrd.img", "ari"))


@pytest.fixture(scope="module")
def state_dir():
    # Not pytest's tmp_path: its parents are 0700 and QEMU runs as libvirt-qemu, which must reach the disks.
    path = Path(tempfile.mkdtemp(prefix="stratus-libvirt-test-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _settings(state_dir: Path, **overrides) -> Settings:
    values = dict(state_dir=str(state_dir), compute_driver="libvirt", libvirt_uri=URI, libvirt_virt_type="auto")
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def driver(test_image, state_dir):
    d = load_driver("libvirt", "libvirt-node-1", _settings(state_dir))
    d.init_host()
    d.created = []  # every UUID a test spawns, destroyed at the end whatever happened
    yield d
    for u in d.created:
        try:
            d.destroy(u)
        except Exception:  # noqa: BLE001 - fall back to virsh so no domain outlives the run
            _virsh("destroy", u)
            _virsh("undefine", u, "--managed-save", "--nvram")


def _instance(image: ImageSpec | None, name: str, **kw) -> InstanceSpec:
    values = dict(uuid=str(uuid.uuid4()), name=name, hostname=name, project_id="p-" + name, user_id="u-" + name,
                  vcpus=1, memory_mb=128, root_gb=1, flavor_name="m1.tiny", flavor_id="1", image=image)
    values.update(kw)
    return InstanceSpec(**values)


def _boot(driver, inst: InstanceSpec) -> None:
    driver.created.append(inst.uuid)
    driver.build_disk(inst)
    driver.spawn(inst)


def _wait_boot(driver, inst: InstanceSpec, boot: int, timeout: float = BOOT_TIMEOUT) -> float:
    """Wait until the guest's userspace printed its marker for the ``boot``-th time (the console log is appended
    across boots); return the seconds waited. When the test disk has a file system (mkfs.ext2 was available),
    the guest's own boot counter on its disk must agree, which shows the overlay persists across reboots."""
    start = time.monotonic()
    out = ""
    while time.monotonic() - start < timeout:
        out = driver.get_console_output(inst.uuid)
        markers = list(MARKER.finditer(out))
        if len(markers) >= boot:
            m = markers[boot - 1]
            assert m.group(1) == inst.hostname and m.group(2).lower() == inst.uuid
            assert m.group(3) in ("0", str(boot)), f"disk boot counter {m.group(3)} != {boot}"
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"guest {inst.uuid} did not print boot={boot} within {timeout}s; console tail:\n"
                         f"{out[-2000:]}")


def _domstate(u: str) -> str:
    r = _virsh("domstate", u)
    return r.stdout.strip() if r.returncode == 0 else f"error: {r.stderr.strip()}"


def _rfb_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.recv(12)


@pytest.fixture(scope="module")
def guest(driver, image):
    inst = _instance(image, "guest-one")
    _boot(driver, inst)
    _wait_boot(driver, inst, 1)
    return inst


def test_virt_type_is_detected_and_host_resources_are_real(driver):
    assert driver.virt_type in ("kvm", "qemu")
    res = driver.get_available_resource()
    assert res.hypervisor_type == "QEMU" and res.hypervisor_version > 1_000_000
    assert res.vcpus == os.cpu_count()
    assert res.memory_mb > 512 and 0 < res.memory_mb_used < res.memory_mb
    assert res.local_gb > 0 and res.local_gb_used <= res.local_gb


def test_spawn_boots_guest_with_expected_domain(driver, guest, image):
    assert driver.get_info(guest.uuid).power_state == PowerState.RUNNING
    assert _domstate(guest.uuid) == "running"
    assert guest.uuid in driver.list_instances()
    xml = _virsh("dumpxml", guest.uuid).stdout
    assert f"<name>{guest.uuid}</name>" in xml and f"<uuid>{guest.uuid}</uuid>" in xml
    assert "http://openstack.org/xmlns/libvirt/nova/1.1" in xml and "guest-one" in xml and "m1.tiny" in xml
    assert f"type='{driver.virt_type}'" in xml.splitlines()[0]
    # Overlay backed by the cached base image, grown to root_gb.
    disk = driver.instances_dir / guest.uuid / "disk"
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)], capture_output=True, text=True)
    assert '"backing-filename-format": "qcow2"' in info.stdout and '"virtual-size": 1073741824' in info.stdout
    assert (driver.base_dir / image.id).is_file() and (driver.base_dir / image.kernel.id).is_file()
    # Retried tasks: both calls are no-ops on a running guest.
    driver.build_disk(guest)
    driver.spawn(guest)
    assert driver.list_instances().count(guest.uuid) == 1
    assert len(MARKER.findall(driver.get_console_output(guest.uuid))) == 1


def test_graphical_consoles_have_live_ports(driver, guest):
    vnc = driver.get_console(guest.uuid, "vnc")
    spice = driver.get_console(guest.uuid, "spice")
    assert vnc.kind == "vnc" and spice.kind == "spice" and vnc.port != spice.port
    assert vnc.host == "127.0.0.1" and vnc.port >= 5900
    assert _rfb_banner(vnc.port).startswith(b"RFB ")
    with socket.create_connection((spice.host, spice.port), timeout=10):
        pass
    with pytest.raises(DriverError):
        driver.get_console(guest.uuid, "rdp")


def test_pause_unpause(driver, guest):
    driver.pause(guest.uuid)
    assert driver.get_info(guest.uuid).power_state == PowerState.PAUSED
    assert _domstate(guest.uuid) == "paused"
    driver.pause(guest.uuid)  # idempotent
    driver.unpause(guest.uuid)
    assert driver.get_info(guest.uuid).power_state == PowerState.RUNNING
    assert _domstate(guest.uuid) == "running"


def test_reboot_soft_and_hard(driver, guest):
    driver.reboot(guest.uuid, "SOFT")  # the guest's acpid powers it off; the driver starts it again
    assert driver.get_info(guest.uuid).power_state == PowerState.RUNNING
    _wait_boot(driver, guest, 2)
    driver.reboot(guest.uuid, "HARD")
    assert driver.get_info(guest.uuid).power_state == PowerState.RUNNING
    _wait_boot(driver, guest, 3)


def test_power_off_and_on(driver, guest):
    start = time.monotonic()
    driver.power_off(guest.uuid, timeout=60)
    soft = time.monotonic() - start
    assert driver.get_info(guest.uuid).power_state == PowerState.SHUTDOWN
    assert _domstate(guest.uuid) == "shut off"
    assert soft < 30, f"ACPI shutdown took {soft:.1f}s: the guest did not react to the power button"
    driver.power_off(guest.uuid, timeout=60)  # idempotent
    assert guest.uuid in driver.list_instances()
    with pytest.raises(DriverError):
        driver.get_console(guest.uuid, "vnc")
    driver.power_on(guest.uuid)
    assert driver.get_info(guest.uuid).power_state == PowerState.RUNNING
    driver.power_on(guest.uuid)  # idempotent
    _wait_boot(driver, guest, 4)
    # A hard stop (timeout 0) works too.
    driver.power_off(guest.uuid)
    assert _domstate(guest.uuid) == "shut off"
    driver.power_on(guest.uuid)
    _wait_boot(driver, guest, 5)


def test_suspend_resume(driver, guest):
    before = driver.get_console_output(guest.uuid)
    driver.suspend(guest.uuid)  # managedSave: memory to disk, domain shut off
    assert driver.get_info(guest.uuid).power_state == PowerState.SUSPENDED
    assert _domstate(guest.uuid) == "shut off"
    assert "Managed save:   yes" in _virsh("dominfo", guest.uuid).stdout
    driver.suspend(guest.uuid)  # idempotent
    driver.resume(guest.uuid)
    assert driver.get_info(guest.uuid).power_state == PowerState.RUNNING
    assert _domstate(guest.uuid) == "running"
    time.sleep(1)
    # Restored, not rebooted: no new boot marker.
    assert len(MARKER.findall(driver.get_console_output(guest.uuid))) == len(MARKER.findall(before))


def test_destroy_removes_domain_and_disk(driver, guest):
    inst_dir = driver.instances_dir / guest.uuid
    assert inst_dir.is_dir()
    driver.destroy(guest.uuid)
    assert guest.uuid not in driver.list_instances()
    assert _domstate(guest.uuid).startswith("error:")
    assert not inst_dir.exists()
    with pytest.raises(InstanceNotFound):
        driver.get_info(guest.uuid)
    driver.destroy(guest.uuid)  # a missing guest is fine


def test_two_guests_at_once(driver, image):
    a, b = _instance(image, "guest-a"), _instance(image, "guest-b", memory_mb=160)
    _boot(driver, a)
    _boot(driver, b)
    _wait_boot(driver, a, 1)
    _wait_boot(driver, b, 1)
    assert {a.uuid, b.uuid} <= set(driver.list_instances())
    assert driver.get_info(b.uuid).memory_mb == 160
    ports = {driver.get_console(u, k).port for u in (a.uuid, b.uuid) for k in ("vnc", "spice")}
    assert len(ports) == 4
    assert driver.get_available_resource().vcpus_used >= 2
    driver.destroy(a.uuid)
    assert _domstate(b.uuid) == "running"
    driver.destroy(b.uuid)
    assert not {a.uuid, b.uuid} & set(driver.list_instances())


def _assert_nothing_left(driver, inst: InstanceSpec) -> None:
    assert inst.uuid not in driver.list_instances()
    assert _domstate(inst.uuid).startswith("error:")
    assert not (driver.instances_dir / inst.uuid).exists()


def test_corrupt_image_fails_cleanly(driver, state_dir):
    garbage = state_dir / "garbage.qcow2"
    garbage.write_bytes(os.urandom(1 << 20))
    bad = ImageSpec(id="garbage-" + uuid.uuid4().hex[:8], disk_format="qcow2", container_format="bare",
                    size=1 << 20, checksum=_md5(garbage), properties={}, path=str(garbage))
    inst = _instance(bad, "corrupt")
    driver.created.append(inst.uuid)
    with pytest.raises(DriverError, match="corrupt|qcow2"):
        driver.build_disk(inst)
    _assert_nothing_left(driver, inst)
    assert not (driver.base_dir / bad.id).exists()
    with pytest.raises(DriverError, match="build_disk"):
        driver.spawn(inst)
    _assert_nothing_left(driver, inst)


def test_checksum_mismatch_fails_cleanly(driver, image):
    bad = ImageSpec(**{**image.__dict__, "id": "badsum-" + uuid.uuid4().hex[:8], "checksum": "0" * 32})
    inst = _instance(bad, "badsum")
    driver.created.append(inst.uuid)
    with pytest.raises(DriverError, match="checksum"):
        driver.build_disk(inst)
    _assert_nothing_left(driver, inst)


def test_failed_spawn_leaves_no_domain(driver, image, state_dir):
    # A bridge that does not exist: the domain defines fine, QEMU's start fails.
    broken = load_driver("libvirt", "libvirt-node-1", _settings(state_dir, libvirt_bridge="stratus-nobr0"))
    inst = _instance(image, "nobridge")
    driver.created.append(inst.uuid)
    broken.build_disk(inst)
    with pytest.raises(DriverError, match="stratus-nobr0"):
        broken.spawn(inst)
    assert inst.uuid not in driver.list_instances()
    assert _domstate(inst.uuid).startswith("error:")
    assert (driver.instances_dir / inst.uuid / "disk").is_file()  # the disk stays until destroy()
    broken.destroy(inst.uuid)
    _assert_nothing_left(driver, inst)


def test_tagged_devices_from_the_domain_and_on_the_config_drive(driver, image):
    """device_metadata() reads the PCI addresses libvirt gave the tagged NIC and root disk, and the config drive
    (built after the define) lists the same devices in meta_data.json."""
    md = metadata_docs.InstanceMetadata(id=1, uuid="u", name="tags", hostname="tags", project_id="p",
                                        availability_zone="nova", launch_index=0, reservation_id="r",
                                        image_ref=image.id, flavor_name="m1.tiny")
    inst = _instance(image, "tagged", network={"mac": "fa:16:3e:12:34:56", "address": "10.9.0.2", "tag": "nic1",
                                               "bridge": "no-such-br0"},
                     root_device_tag="root", config_drive_files=md.config_drive_files())
    _boot(driver, inst)
    devices = driver.device_metadata(inst)
    xml = _virsh("dumpxml", inst.uuid).stdout
    assert [d["type"] for d in devices] == ["nic", "disk"] and all(d["bus"] == "pci" for d in devices)
    for dev in devices:
        assert re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", dev["address"]), dev
        slot = "0x" + dev["address"].split(":")[2].split(".")[0]
        assert f"slot='{slot}'" in xml
    assert devices[0]["mac"] == "fa:16:3e:12:34:56" and devices[0]["tags"] == ["nic1"]
    assert devices[1]["tags"] == ["root"] and devices[1]["serial"] is None
    iso = driver.instances_dir / inst.uuid / "disk.config"
    shown = subprocess.run(["isoinfo", "-i", str(iso), "-R", "-x", "/openstack/latest/meta_data.json"],
                           capture_output=True, check=True).stdout
    assert json.loads(shown)["devices"] == metadata_docs.render_devices(devices, "latest")
    driver.destroy(inst.uuid)
