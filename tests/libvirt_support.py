"""Shared pieces of the tests that boot real QEMU guests: virsh helpers, the test guest, a libvirt stack."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.stack import BACKENDS, REPO, Backend, Stack

URI = "qemu:///system"
LIBVIRT_BINARIES = ("virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img")
LIBVIRT_PACKAGES = ("libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils "
                    "cpio kmod busybox-static syslinux syslinux-common mtools dosfstools")


def virsh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)


def domains() -> set[str]:
    r = virsh("list", "--all", "--uuid")
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def domstate(uuid: str) -> str:
    r = virsh("domstate", uuid)
    return r.stdout.strip() if r.returncode == 0 else "absent"


def require_test_image(extra_binaries: tuple[str, ...] = (), extra_packages: str = "",
                       what: str = "LIBVIRT TESTS") -> Path:
    """Start libvirtd and build the test guest; skip loudly only if the hypervisor stack is not installed."""
    missing = [b for b in (*LIBVIRT_BINARIES, *extra_binaries)
               if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        pytest.skip(f"!!! {what} SKIPPED: {', '.join(missing)} not installed. Install: apt-get install -y "
                    f"{LIBVIRT_PACKAGES} {extra_packages} !!!")
    for tool in ("libvirt-up", "build-test-image"):
        run = subprocess.run([str(REPO / "tools" / tool)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"tools/{tool} failed:\n{run.stdout}\n{run.stderr}"
    image_dir = Path(os.environ.get("STRATUS_TEST_IMAGE_DIR", REPO / ".cache" / "test-image"))
    for name in ("vmlinuz", "initrd.img", "disk.qcow2", "cmdline", "whole-disk.qcow2"):
        assert (image_dir / name).is_file(), f"build-test-image made no {name}"
    return image_dir


def upload_test_image(api, image_dir: Path) -> tuple[str, str]:
    """Upload the test guest as Nova expects a kernel/ramdisk boot (kernel ``aki``, ramdisk ``ari``, the qcow2
    disk with kernel_id/ramdisk_id/os_command_line) and make a flavor it fits; ``api`` is an
    ``outage_support.Client``. Returns (disk image id, flavor id)."""
    import requests
    kernel = api.upload("test-kernel", image_dir / "vmlinuz", "aki", "aki")
    ramdisk = api.upload("test-ramdisk", image_dir / "initrd.img", "ari", "ari")
    disk = api.upload("test-disk", image_dir / "disk.qcow2", "qcow2", "bare", kernel_id=kernel,
                      ramdisk_id=ramdisk, os_command_line=(image_dir / "cmdline").read_text().strip())
    r = requests.post(f"{api.url}/flavors", headers=api.headers, timeout=30,
                      json={"flavor": {"name": "guest.tiny", "ram": 128, "vcpus": 1, "disk": 1}})
    r.raise_for_status()
    return disk, r.json()["flavor"]["id"]


def destroy_own_domains(instances: Path, before: set[str]) -> None:
    """Remove domains a failed test left behind, but only this stack's: libvirtd is shared."""
    for uuid in domains() - before:
        if str(instances) in virsh("dumpxml", uuid).stdout:
            virsh("destroy", uuid)
            virsh("undefine", uuid, "--managed-save", "--nvram")


def _print_api_errors(st: Stack) -> None:
    """Show any 500 the API logged (with its traceback) in the test output: the logs are deleted afterwards."""
    for proc in ("api", "conductor"):
        lines = st.log(proc).splitlines()
        for i, line in enumerate(lines):
            if "unexpected error" in line or "raised unexpected" in line:
                print(f"--- {proc}.log ---\n" + "\n".join(lines[i:i + 60]))


@contextlib.contextmanager
def libvirt_stack(name: str, host: str, extra_env: dict[str, str] | None = None,
                  processes: tuple[str, ...] = ("api", "conductor", "scheduler", "compute"),
                  keep_logs: Callable[[], bool] = lambda: False,
                  backend: Backend | None = None) -> Iterator[Stack]:
    """A whole cloud whose compute host runs the libvirt driver (on SQLite and the filesystem broker unless
    ``backend`` says otherwise). Its files live under /var/tmp, not pytest's 0700 tmp dirs, because QEMU runs as
    libvirt-qemu. ``keep_logs()`` true at the end keeps the processes' logs."""
    base = Path(tempfile.mkdtemp(prefix=f"stratus-{name}-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    instances = base / "instances"
    instances.mkdir(mode=0o755)
    before = domains()
    st = Stack(base / "state", backend or BACKENDS["sqlite-filesystem"], compute_hosts=host, processes=processes,
               extra_env={"STRATUS_COMPUTE_DRIVER": "libvirt", "STRATUS_LIBVIRT_URI": URI,
                          "STRATUS_INSTANCES_PATH": str(instances), **(extra_env or {})})
    st.instances = instances
    try:
        st.start()
        yield st
    finally:
        st.stop()
        destroy_own_domains(instances, before)
        _print_api_errors(st)
        if keep_logs():
            shutil.rmtree(instances, ignore_errors=True)
            print(f"{name}: a test failed; the stack's logs are in {base / 'state'}")
        else:
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def private_libvirtd(name: str, port: int, address: str = "127.0.0.1", netns: str | None = None) -> Iterator[str]:
    """A libvirt daemon of its own (tools/libvirt-node): another hypervisor host with its own domains, host UUID
    and TCP listener, for moves between hosts; started inside network namespace ``netns`` if given (its guests'
    taps and VNC servers then live there). Yields its qemu+tcp URI; stops it and its guests afterwards."""
    base = Path(tempfile.mkdtemp(prefix=f"stratus-libvirtd-{name}-", dir="/var/tmp"))
    tool = str(REPO / "tools" / "libvirt-node")
    run = subprocess.run([*(["ip", "netns", "exec", netns] if netns else []), tool, "start", str(base), str(port),
                          address], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"tools/libvirt-node start failed:\n{run.stdout}\n{run.stderr}"
    try:
        yield run.stdout.split()[0]
    finally:
        subprocess.run([tool, "stop", str(base)], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


# A value the test guest printed: STRATUS-MD-BEGIN <source> <name> ... STRATUS-MD-END <source> <name>
# (BEGIN may follow the shell's first prompt on the same console line)
MD_SECTION = re.compile(r"STRATUS-MD-BEGIN (\S+) (\S+)\r?\n(.*?)\r?\nSTRATUS-MD-END \1 \2\r?$", re.M | re.S)


def metadata_sections(log: str) -> dict[tuple[str, str], str]:
    """The metadata values in a test guest's console log, by (source, name): source http (169.254.169.254) or
    configdrive."""
    return {(m.group(1), m.group(2)): m.group(3).replace("\r", "").strip("\n") for m in MD_SECTION.finditer(log)}


def compute_call(api, method: str, path: str, body: dict | None = None, version: str = "2.53"):
    """A compute API request at ``version`` with ``api``'s token (an ``outage_support.Client``); the response."""
    import requests
    return requests.request(method, f"{api.url}{path}", json=body, timeout=60,
                            headers={**api.headers, "OpenStack-API-Version": f"compute {version}"})


def wait_server_status(api, uuid: str, status: str, timeout: float) -> dict:
    """The server once it is ``status`` with no task state (fails at once on ERROR, with its fault)."""
    import time
    deadline, server = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        server = compute_call(api, "GET", f"/servers/{uuid}", version="2.96").json()["server"]
        if server["status"] == status and not server["OS-EXT-STS:task_state"]:
            return server
        assert server["status"] != "ERROR", server.get("fault")
        time.sleep(1)
    raise AssertionError(f"{uuid} not {status} within {timeout}s: {server}")


def console_count(api, uuid: str, marker: str) -> int:
    """How often ``marker`` (the test guest's line once it reaches userspace) is in the server's console log."""
    r = compute_call(api, "POST", f"/servers/{uuid}/action", {"os-getConsoleOutput": {}})
    return r.json()["output"].count(marker) if r.ok else 0


def wait_console_count(api, uuid: str, count: int, marker: str, timeout: float) -> None:
    import time
    deadline = time.monotonic() + timeout
    while console_count(api, uuid, marker) < count:
        assert time.monotonic() < deadline, f"{uuid}: boot {count} of the guest never reached userspace"
        time.sleep(1)
