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
import time
from pathlib import Path

import pytest
import requests

from tests.libvirt_support import domains as _domains, domstate as _domstate, libvirt_stack, require_test_image
from tests.libvirt_support import virsh as _virsh

pytestmark = pytest.mark.libvirt

HOST = "kvm-1"
BOOT_TIMEOUT = 120  # create --wait plus the guest reaching userspace, two TCG guests on two cores


def _marker(hostname: str) -> re.Pattern:
    return re.compile(rf"STRATUS-GUEST-UP hostname={re.escape(hostname)} uuid=(\S*) boot=(\d+)")


@pytest.fixture(scope="module")
def test_image() -> Path:
    return require_test_image()


@pytest.fixture(scope="module")
def stack(request, test_image):
    failed = request.session.testsfailed
    with libvirt_stack("libvirt-cli", HOST, keep_logs=lambda: request.session.testsfailed != failed) as st:
        yield st


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
    props = disk.get("properties") or {}
    assert props.get("kernel_id") == kernel["id"] and props.get("ramdisk_id") == ramdisk["id"], disk
    stack.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "guest.tiny")
    return disk["id"]


class Api:
    """Plain REST reads for polling (each ``openstack`` run costs seconds of CPU); actions go through the CLI."""

    def __init__(self, stack):
        self.url = f"{stack.url}/v2.1"
        self.headers = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.79"}

    def server(self, uuid: str) -> dict:
        r = requests.get(f"{self.url}/servers/{uuid}", headers=self.headers, timeout=30)
        r.raise_for_status()
        return r.json()["server"]

    def find(self, name: str) -> list[dict]:
        r = requests.get(f"{self.url}/servers/detail", params={"name": name}, headers=self.headers, timeout=30)
        r.raise_for_status()
        return r.json()["servers"]

    def console(self, uuid: str) -> str:
        r = requests.post(f"{self.url}/servers/{uuid}/action", json={"os-getConsoleOutput": {}},
                          headers=self.headers, timeout=60)
        return r.json().get("output", "") if r.ok else ""


@pytest.fixture(scope="module")
def api(stack) -> Api:
    return Api(stack)


def wait_status(api: Api, uuid: str, status: str, timeout: float = 90) -> dict:
    """Wait until the server shows ``status`` with no task in progress."""
    deadline = time.monotonic() + timeout
    while True:
        info = api.server(uuid)
        done = info["status"] == status and not info.get("OS-EXT-STS:task_state")
        if done or time.monotonic() > deadline:
            assert done, (f"{uuid} is {info['status']} (task {info.get('OS-EXT-STS:task_state')}, power "
                          f"{info.get('OS-EXT-STS:power_state')}), not {status}; fault: {info.get('fault')}")
            return info
        time.sleep(0.3)


def wait_console(api: Api, uuid: str, hostname: str, count: int = 1, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until the console log has the guest userspace's marker ``count`` times (the log is appended across
    boots)."""
    deadline = time.monotonic() + timeout
    log = ""
    while time.monotonic() < deadline:
        log = api.console(uuid)
        if len(_marker(hostname).findall(log)) >= count:
            return log
        time.sleep(0.5)
    raise AssertionError(f"{uuid}: the guest did not print its marker {count}x within {timeout}s; console "
                         f"tail:\n{log[-2000:]}")


_T0 = [time.monotonic()]


def _lap(what: str) -> None:
    """Print how long each step took (pytest shows it with -s or on failure): TCG guests on a busy machine."""
    now = time.monotonic()
    print(f"[{now - _T0[0]:6.1f}s] {what}")
    _T0[0] = now


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


def test_server_lifecycle_through_the_cli(stack, api, image):
    server = _create(stack, image, "lv-one", "--wait")
    _lap("create --wait (incl. stack setup)")
    uuid = server["id"]
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == HOST
    assert server["OS-EXT-STS:power_state"] in ("Running", 1)
    assert _domstate(uuid) == "running"
    inst_dir = stack.instances / uuid
    assert (inst_dir / "disk").is_file()
    hostname = api.server(uuid)["OS-EXT-SRV-ATTR:hostname"]
    assert hostname == "lv-one"
    wait_console(api, uuid, hostname)
    _lap("guest userspace up")
    log = stack.openstack("console", "log", "show", "lv-one").stdout  # what the user sees
    found = _marker(hostname).findall(log)
    assert len(found) == 1 and found[0][0].lower() == uuid, log[-2000:]
    used = _node_usage(stack)
    assert used[:2] == (1, 128)

    stack.openstack("server", "stop", "lv-one")  # clean shutdown: the guest's acpid powers it off
    stopped = wait_status(api, uuid, "SHUTOFF", timeout=90)
    _lap("stop -> SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4
    assert _domstate(uuid) == "shut off"
    assert stack.openstack_json("server", "show", "lv-one")["status"] == "SHUTOFF"

    stack.openstack("server", "start", "lv-one")
    _lap("start (CLI)")
    assert wait_status(api, uuid, "ACTIVE")["OS-EXT-STS:power_state"] == 1
    assert _domstate(uuid) == "running"
    wait_console(api, uuid, hostname, count=2)
    _lap("start -> guest up again")

    stack.openstack("server", "reboot", "--wait", "lv-one")  # SOFT: ACPI power button, then start again
    assert wait_status(api, uuid, "ACTIVE")["OS-EXT-STS:power_state"] == 1
    assert _domstate(uuid) == "running"
    wait_console(api, uuid, hostname, count=3)
    _lap("reboot -> guest up again")

    stack.openstack("server", "pause", "lv-one")
    _lap("pause (CLI)")
    assert wait_status(api, uuid, "PAUSED")["OS-EXT-STS:power_state"] == 3
    assert _domstate(uuid) == "paused"
    assert stack.openstack_json("server", "show", "lv-one")["status"] == "PAUSED"
    stack.openstack("server", "unpause", "lv-one")
    _lap("PAUSED, unpause (CLI)")
    assert wait_status(api, uuid, "ACTIVE")["OS-EXT-STS:power_state"] == 1
    assert _domstate(uuid) == "running"

    stack.openstack("server", "delete", "--wait", "lv-one")
    _lap("delete --wait")
    assert _domstate(uuid) == "absent" and uuid not in _domains()
    assert not inst_dir.exists()
    assert _node_usage(stack) == (0, 0, 0)


def test_two_guests_at_once_and_power_sync(stack, api, image):
    _create(stack, image, "lv-pair", "--min", "2", "--max", "2")
    _lap("create --min 2 --max 2")
    servers = sorted(api.find("lv-pair"), key=lambda s: s["name"])
    assert [s["name"] for s in servers] == ["lv-pair-1", "lv-pair-2"]
    a, b = (wait_status(api, s["id"], "ACTIVE", BOOT_TIMEOUT) for s in servers)
    _lap("both ACTIVE")
    assert _node_usage(stack)[:2] == (2, 256)
    for info in (a, b):
        assert info["OS-EXT-SRV-ATTR:host"] == HOST and _domstate(info["id"]) == "running"
        wait_console(api, info["id"], info["OS-EXT-SRV-ATTR:hostname"])
    listed = {s["Name"]: s["Status"] for s in stack.openstack_json("server", "list")}
    assert listed == {"lv-pair-1": "ACTIVE", "lv-pair-2": "ACTIVE"}

    # Stopped behind Stratus's back: the compute's periodic power-state sync (every report interval, 2 s here)
    # reports it, and the conductor marks the server SHUTOFF.
    assert _virsh("destroy", a["id"]).returncode == 0
    synced = wait_status(api, a["id"], "SHUTOFF", timeout=20)
    _lap("both up; virsh destroy -> SHUTOFF by power sync")
    assert synced["OS-EXT-STS:power_state"] == 4
    assert api.server(b["id"])["status"] == "ACTIVE" and _domstate(b["id"]) == "running"

    stack.openstack("server", "delete", "--wait", a["id"], b["id"])
    _lap("delete both")
    for info in (a, b):
        assert _domstate(info["id"]) == "absent"
        assert not (stack.instances / info["id"]).exists()
    assert _node_usage(stack) == (0, 0, 0)


def test_guest_that_fails_to_start_leaves_nothing(stack, api, tmp_path):
    # Uploaded as qcow2, but only the header's magic is right: QEMU refuses to open the disk.
    bad = tmp_path / "corrupt.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\x00\x00\x00\x03" + os.urandom(64 * 1024))
    img = stack.openstack_json("image", "create", "--file", str(bad), "--disk-format", "qcow2",
                               "--container-format", "bare", "corrupt-disk")
    proc = _create(stack, img["id"], "lv-bad", "--wait", check=False)
    _lap("create corrupt --wait")
    assert proc.returncode != 0
    [server] = api.find("lv-bad")
    info = wait_status(api, server["id"], "ERROR", timeout=60)
    _lap("ERROR")
    fault = info.get("fault") or {}
    assert fault.get("code") == 500 and fault.get("message"), info
    print("fault:", fault["message"])
    assert _domstate(server["id"]) == "absent"
    assert not (stack.instances / server["id"]).exists()
    assert _node_usage(stack) == (0, 0, 0)
    stack.openstack("server", "delete", "--wait", "lv-bad")
    _lap("delete failed server")
    assert _node_usage(stack) == (0, 0, 0)
