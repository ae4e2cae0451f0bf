"""Issue 4 acceptance: real QEMU guests booted, controlled and deleted through real Stratus processes (api,
conductor, scheduler, compute with ``compute_driver = libvirt``) and the unmodified ``openstack`` CLI.

The test image (tools/build-test-image) is uploaded the way Nova expects a kernel/ramdisk boot: the kernel as an
``aki`` image, the ramdisk as ``ari``, and the disk as qcow2 with the properties ``kernel_id``, ``ramdisk_id`` and
``os_command_line``. Hypervisor state is checked with ``virsh`` and the instance directory on disk, allocations by
reading the database. Guests run under TCG here, so every wait is generous.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.stack import BACKENDS, Stack

pytestmark = pytest.mark.libvirt

REPO = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
HOST = "kvm-1"
BOOT_TIMEOUT = 120  # create --wait plus the guest reaching userspace, two TCG guests on two cores


def _virsh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)


def _domstate(uuid: str) -> str:
    r = _virsh("domstate", uuid)
    return r.stdout.strip() if r.returncode == 0 else "absent"


def _domains() -> set[str]:
    r = _virsh("list", "--all", "--uuid")
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def _marker(hostname: str) -> re.Pattern:
    return re.compile(rf"STRATUS-GUEST-UP hostname={re.escape(hostname)} uuid=(\S*) boot=(\d+)")


@pytest.fixture(scope="module")
def test_image() -> Path:
    missing = [b for b in ("virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img")
               if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        pytest.skip(f"!!! LIBVIRT TESTS SKIPPED: {', '.join(missing)} not installed. Install: apt-get install -y "
                    "libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils "
                    "cpio kmod busybox-static !!!")
    for tool in ("libvirt-up", "build-test-image"):
        run = subprocess.run([str(REPO / "tools" / tool)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"tools/{tool} failed:\n{run.stdout}\n{run.stderr}"
    image_dir = Path(os.environ.get("STRATUS_TEST_IMAGE_DIR", REPO / ".cache" / "test-image"))
    for name in ("vmlinuz", "initrd.img", "disk.qcow2", "cmdline"):
        assert (image_dir / name).is_file(), f"build-test-image made no {name}"
    return image_dir


@pytest.fixture(scope="module")
def stack(test_image, tmp_path_factory):
    # Instances live under /var/tmp: QEMU runs as libvirt-qemu and pytest's tmp dirs are 0700.
    instances = Path(tempfile.mkdtemp(prefix="stratus-libvirt-cli-", dir="/var/tmp"))
    os.chmod(instances, 0o755)
    before = _domains()
    st = Stack(tmp_path_factory.mktemp("libvirt-cli"), BACKENDS["sqlite-filesystem"], compute_hosts=HOST,
               extra_env={"STRATUS_COMPUTE_DRIVER": "libvirt", "STRATUS_LIBVIRT_URI": URI,
                          "STRATUS_INSTANCES_PATH": str(instances)})
    st.instances = instances
    try:
        st.start()
        yield st
    finally:
        st.stop()
        for uuid in _domains() - before:  # whatever a failed test left behind
            _virsh("destroy", uuid)
            _virsh("undefine", uuid, "--managed-save", "--nvram")
        shutil.rmtree(instances, ignore_errors=True)


@pytest.fixture(scope="module")
def image(stack, test_image) -> str:
    """Upload kernel (aki), ramdisk (ari) and disk (qcow2 + kernel_id/ramdisk_id/os_command_line)."""
    kernel = stack.openstack_json("image", "create", "--file", str(test_image / "vmlinuz"), "--disk-format", "aki",
                                  "--container-format", "aki", "stratus-test-kernel")
    ramdisk = stack.openstack_json("image", "create", "--file", str(test_image / "initrd.img"), "--disk-format",
                                   "ari", "--container-format", "ari", "stratus-test-ramdisk")
    cmdline = (test_image / "cmdline").read_text().strip()
    disk = stack.openstack_json("image", "create", "--file", str(test_image / "disk.qcow2"), "--disk-format",
                                "qcow2", "--container-format", "bare", "--property", f"kernel_id={kernel['id']}",
                                "--property", f"ramdisk_id={ramdisk['id']}", "--property",
                                f"os_command_line={cmdline}", "stratus-test-disk")
    assert disk["status"] == "active" and kernel["status"] == "active" and ramdisk["status"] == "active"
    shown = stack.openstack_json("image", "show", disk["id"])
    props = shown.get("properties") or {}
    assert props.get("kernel_id") == kernel["id"] and props.get("ramdisk_id") == ramdisk["id"], shown
    stack.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "guest.tiny")
    return disk["id"]


def _server(stack, server: str) -> dict:
    return stack.openstack_json("server", "show", server)


def wait_status(stack, server: str, status: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = _server(stack, server)
        if (info["status"] == status and not info.get("OS-EXT-STS:task_state")) or time.monotonic() > deadline:
            assert info["status"] == status and not info.get("OS-EXT-STS:task_state"), info
            return info
        time.sleep(0.5)


def wait_console(stack, server: str, hostname: str, count: int = 1, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until ``openstack console log show`` has the guest userspace's marker ``count`` times (the console
    log is appended across boots)."""
    deadline = time.monotonic() + timeout
    log = ""
    while time.monotonic() < deadline:
        log = stack.openstack("console", "log", "show", server).stdout
        if len(_marker(hostname).findall(log)) >= count:
            return log
        time.sleep(1)
    raise AssertionError(f"{server}: the guest did not print its marker {count}x within {timeout}s; console "
                         f"tail:\n{log[-2000:]}\ncompute log tail:\n{stack.log('compute')[-3000:]}")


def wait_domstate(uuid: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _domstate(uuid) != state and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _domstate(uuid) == state


def _node_usage(stack) -> tuple:
    from sqlalchemy import create_engine, text
    engine = create_engine(f"sqlite:///{stack.state_dir / 'stratus.sqlite'}")
    try:
        with engine.connect() as c:
            return tuple(c.execute(text("SELECT vcpus_used, memory_mb_used, local_gb_used FROM compute_nodes "
                                        "WHERE host = :h"), {"h": HOST}).one())
    finally:
        engine.dispose()


def _create(stack, image: str, name: str, *extra: str, check: bool = True):
    args = ("server", "create", "--image", image, "--flavor", "guest.tiny", "--nic", "none", *extra, name)
    if not check:
        return stack.openstack(*args, check=False)
    return stack.openstack_json(*args)


def test_server_lifecycle_through_the_cli(stack, image):
    server = _create(stack, image, "lv-one", "--wait")
    uuid = server["id"]
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == HOST
    assert _domstate(uuid) == "running"
    inst_dir = stack.instances / uuid
    assert (inst_dir / "disk").is_file()
    hostname = server.get("OS-EXT-SRV-ATTR:hostname") or "lv-one"
    log = wait_console(stack, "lv-one", hostname)
    assert _marker(hostname).search(log).group(1).lower() == uuid

    stack.openstack("server", "stop", "lv-one")
    stopped = wait_status(stack, "lv-one", "SHUTOFF", timeout=90)
    assert stopped["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    assert _domstate(uuid) == "shut off"

    stack.openstack("server", "start", "lv-one")
    wait_status(stack, "lv-one", "ACTIVE")
    assert _domstate(uuid) == "running"
    wait_console(stack, "lv-one", hostname, count=2)

    stack.openstack("server", "reboot", "--wait", "lv-one")  # SOFT: ACPI power button, then start again
    rebooted = wait_status(stack, "lv-one", "ACTIVE")
    assert rebooted["OS-EXT-STS:power_state"] in ("Running", 1)
    wait_console(stack, "lv-one", hostname, count=3)

    stack.openstack("server", "pause", "lv-one")
    paused = wait_status(stack, "lv-one", "PAUSED")
    assert paused["OS-EXT-STS:power_state"] in ("Paused", 3)
    assert _domstate(uuid) == "paused"
    stack.openstack("server", "unpause", "lv-one")
    wait_status(stack, "lv-one", "ACTIVE")
    assert _domstate(uuid) == "running"

    stack.openstack("server", "delete", "--wait", "lv-one")
    assert _domstate(uuid) == "absent" and uuid not in _domains()
    assert not inst_dir.exists()
    assert _node_usage(stack) == (0, 0, 0)


def test_two_guests_at_once_and_power_sync(stack, image):
    _create(stack, image, "lv-a")
    _create(stack, image, "lv-b")
    a, b = wait_status(stack, "lv-a", "ACTIVE", BOOT_TIMEOUT), wait_status(stack, "lv-b", "ACTIVE", BOOT_TIMEOUT)
    for info, name in ((a, "lv-a"), (b, "lv-b")):
        assert _domstate(info["id"]) == "running"
        wait_console(stack, name, info.get("OS-EXT-SRV-ATTR:hostname") or name)
    assert _node_usage(stack)[:2] == (2, 256)

    # Stopped behind Stratus's back: the periodic power-state sync (every report interval, 2 s) notices.
    assert _virsh("destroy", a["id"]).returncode == 0
    synced = wait_status(stack, "lv-a", "SHUTOFF", timeout=20)
    assert synced["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    assert _server(stack, "lv-b")["status"] == "ACTIVE" and _domstate(b["id"]) == "running"

    stack.openstack("server", "delete", "--wait", "lv-a", "lv-b")
    for info in (a, b):
        assert _domstate(info["id"]) == "absent"
        assert not (stack.instances / info["id"]).exists()
    assert _node_usage(stack) == (0, 0, 0)


def test_guest_that_fails_to_start_leaves_nothing(stack, test_image, tmp_path):
    # A "qcow2" image whose data is not qcow2: the base is cached, but the overlay/QEMU cannot use it.
    bad = tmp_path / "corrupt.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\x00\x00\x00\x03" + os.urandom(64 * 1024))
    img = stack.openstack_json("image", "create", "--file", str(bad), "--disk-format", "qcow2",
                               "--container-format", "bare", "corrupt-disk")
    before = _domains()
    proc = _create(stack, img["id"], "lv-bad", "--wait", check=False)
    assert proc.returncode != 0
    info = wait_status(stack, "lv-bad", "ERROR", timeout=60)
    fault = info.get("fault") or {}
    assert fault.get("message"), info
    assert info["id"] not in _domains() and _domains() <= before
    assert not (stack.instances / info["id"]).exists()
    assert _node_usage(stack) == (0, 0, 0)
    stack.openstack("server", "delete", "--wait", "lv-bad")
    assert _node_usage(stack) == (0, 0, 0)
