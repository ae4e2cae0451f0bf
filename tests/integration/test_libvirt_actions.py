"""Server diagnostics, trigger_crash_dump and createImage on a real QEMU guest (compute_driver = libvirt), through
real Stratus processes and the REST API. One TCG guest serves every check (boots are slow on two cores)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.libvirt_support import domstate, libvirt_stack, require_test_image, upload_test_image, virsh
from tests.outage_support import Client

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

HOST = "kvm-actions"
BOOT_TIMEOUT = 150


def _get(api: Client, path: str, version: str = "2.96") -> requests.Response:
    return requests.get(f"{api.url}{path}", timeout=60,
                        headers={**api.headers, "OpenStack-API-Version": f"compute {version}"})


def _action(api: Client, uuid: str, body: dict, version: str = "2.96") -> requests.Response:
    return requests.post(f"{api.url}/servers/{uuid}/action", json=body, timeout=60,
                         headers={**api.headers, "OpenStack-API-Version": f"compute {version}"})


def _console(api: Client, uuid: str) -> str:
    r = _action(api, uuid, {"os-getConsoleOutput": {}})
    return r.json().get("output", "") if r.ok else ""


def _wait_console(api: Client, uuid: str, pattern: str, timeout: float) -> str:
    deadline, log = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        log = _console(api, uuid)
        if re.search(pattern, log):
            return log
        time.sleep(0.5)
    raise AssertionError(f"{uuid}: {pattern!r} not on the console within {timeout}s; tail:\n{log[-2000:]}")


def _qemu_img_info(path: Path) -> dict:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def stack(request):
    image_dir = require_test_image()
    failed = request.session.testsfailed
    with libvirt_stack("libvirt-actions", HOST, keep_logs=lambda: request.session.testsfailed != failed) as st:
        st.image_dir = image_dir
        yield st


@pytest.fixture(scope="module")
def guest(stack) -> tuple[Client, str]:
    """One running guest whose userspace is up."""
    api = Client(stack)
    image, flavor = upload_test_image(api, stack.image_dir)
    r = api.boot(image, "lv-actions", flavor=flavor)
    assert r.status_code == 202, r.text
    uuid = r.json()["server"]["id"]
    server = api.wait_settled({uuid}, timeout=BOOT_TIMEOUT)[uuid]
    assert server["status"] == "ACTIVE", server
    _wait_console(api, uuid, r"STRATUS-GUEST-UP hostname=lv-actions", BOOT_TIMEOUT)
    return api, uuid


def test_diagnostics_report_the_real_guest(guest):
    api, uuid = guest
    r = _get(api, f"/servers/{uuid}/diagnostics", "2.48")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["state"] == "running" and d["driver"] == "libvirt" and d["hypervisor"] in ("qemu", "kvm"), d
    assert d["hypervisor_os"] == "linux" and d["uptime"] > 0 and d["config_drive"] is False
    assert d["num_cpus"] == 1 and len(d["cpu_details"]) == 1 and d["cpu_details"][0]["time"] > 0, d
    assert d["memory_details"]["maximum"] == 128 and 0 < d["memory_details"]["used"] <= 128, d
    mac = re.search(r"([0-9a-f]{2}(?::[0-9a-f]{2}){5})", virsh("domiflist", uuid).stdout).group(1)
    assert d["num_nics"] == 1 and d["nic_details"][0]["mac_address"] == mac, d
    # The guest's /init mounted its disk (vda) and wrote a boot count to it.
    assert d["num_disks"] == 1 and d["disk_details"][0]["read_bytes"] > 0, d
    # Before 2.48: the libvirt driver's own flat keys.
    legacy = _get(api, f"/servers/{uuid}/diagnostics", "2.47").json()
    assert legacy["cpu0_time"] > 0 and legacy["memory"] == 128 * 1024, legacy


def test_trigger_crash_dump_sends_an_nmi_the_guest_kernel_receives(guest):
    api, uuid = guest
    r = _action(api, uuid, {"trigger_crash_dump": None}, "2.17")
    assert r.status_code == 202, r.text
    # The busybox guest's kernel has no crash kernel loaded: it reports the NMI and carries on.
    _wait_console(api, uuid, r"Uhhuh\. NMI received", 60)
    actions = _get(api, f"/servers/{uuid}/os-instance-actions").json()["instanceActions"]
    request_id = next(a["request_id"] for a in actions if a["action"] == "trigger_crash_dump")
    deadline = time.monotonic() + 30
    while True:
        events = _get(api, f"/servers/{uuid}/os-instance-actions/{request_id}").json()["instanceAction"]["events"]
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(e["event"], e["result"]) for e in events] == [("compute_trigger_crash_dump", "Success")], events
    assert domstate(uuid) == "running"


def test_create_image_uploads_a_standalone_copy_of_the_disk(guest, stack, tmp_path):
    api, uuid = guest
    r = _action(api, uuid, {"createImage": {"name": "lv-actions-snap", "metadata": {"purpose": "test"}}}, "2.45")
    assert r.status_code == 202, r.text
    image_id = r.json()["image_id"]
    deadline = time.monotonic() + 180
    while True:
        image = requests.get(f"{stack.url}/image/v2/images/{image_id}", headers=api.headers, timeout=30).json()
        if image["status"] in ("active", "killed", "deleted") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert image["status"] == "active" and image["size"] > 0, image
    assert image["disk_format"] == "qcow2" and image["purpose"] == "test" and image["instance_uuid"] == uuid, image
    server = api.wait_settled({uuid}, timeout=60)[uuid]
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:task_state"] is None, server
    assert domstate(uuid) == "running"  # paused for the copy, then resumed

    data = requests.get(f"{stack.url}/image/v2/images/{image_id}/file", headers=api.headers, timeout=120).content
    assert len(data) == image["size"]
    snap = tmp_path / "snap.qcow2"
    snap.write_bytes(data)
    info = _qemu_img_info(snap)
    disk = _qemu_img_info(stack.instances / uuid / "disk")
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert info["virtual-size"] == disk["virtual-size"] == 1 << 30, (info, disk)
    subprocess.run(["qemu-img", "check", "-q", str(snap)], check=True)
    assert b"stratus test disk" in data  # the base image's file system came along (no backing file needed)


def _markers(api: Client, uuid: str, count: int) -> list[int]:
    """Boot counts of the guest's first ``count`` userspace markers (its /init counts boots on vda)."""
    deadline, found, log = time.monotonic() + BOOT_TIMEOUT, [], ""
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        log = _console(api, uuid)
        found = [int(b) for b in re.findall(r"STRATUS-GUEST-UP hostname=lv-actions uuid=\S* boot=(\d+)", log)]
    assert len(found) >= count, f"{uuid}: {count} boots expected, console tail:\n{log[-2000:]}"
    return found


def _disks(uuid: str) -> dict[str, str]:
    lines = virsh("domblklist", uuid).stdout.splitlines()[2:]
    return {parts[0]: parts[1] for parts in (line.split() for line in lines) if len(parts) == 2}


def test_rescue_boots_the_rescue_disk_and_unrescue_the_own_disk_again(guest, stack):
    api, uuid = guest
    inst_dir = stack.instances / uuid
    assert _markers(api, uuid, 1) == [1]
    r = _action(api, uuid, {"rescue": {}})
    assert r.status_code == 200 and r.json().get("adminPass"), r.text
    server = api.wait_settled({uuid}, timeout=120)[uuid]
    assert server["status"] == "RESCUE", server
    assert _disks(uuid) == {"vda": str(inst_dir / "disk.rescue"), "vdb": str(inst_dir / "disk")}
    assert domstate(uuid) == "running"
    # A fresh copy of the image is vda: its boot count starts again.
    assert _markers(api, uuid, 2) == [1, 1]
    assert _get(api, f"/servers/{uuid}/diagnostics", "2.48").json()["num_disks"] == 2

    r = _action(api, uuid, {"unrescue": None})
    assert r.status_code == 202, r.text
    server = api.wait_settled({uuid}, timeout=120)[uuid]
    assert server["status"] == "ACTIVE", server
    assert _disks(uuid) == {"vda": str(inst_dir / "disk")}
    assert _markers(api, uuid, 3) == [1, 1, 2]  # its own disk again, which had counted one boot
    assert not (inst_dir / "disk.rescue").exists() and not (inst_dir / "unrescue.xml").exists()


def test_shelve_offloads_with_a_snapshot_that_unshelve_boots(guest, stack):
    """shelve (offloaded at once): power off, snapshot into ``<name>-shelved``, domain and disk gone; unshelve
    boots a new domain from that snapshot, whose disk still counts the guest's boots."""
    api, uuid = guest
    assert _markers(api, uuid, 3)[-1] == 2
    r = _action(api, uuid, {"shelve": None})
    assert r.status_code == 202, r.text
    server = api.wait_settled({uuid}, timeout=120)[uuid]
    assert server["status"] == "SHELVED_OFFLOADED", server
    assert domstate(uuid) == "absent" and not (stack.instances / uuid).exists()
    found = requests.get(f"{stack.url}/image/v2/images", params={"name": "lv-actions-shelved"},
                         headers=api.headers, timeout=30).json()["images"]
    assert len(found) == 1 and found[0]["status"] == "active" and found[0]["disk_format"] == "qcow2", found

    r = _action(api, uuid, {"unshelve": None})
    assert r.status_code == 202, r.text
    server = api.wait_settled({uuid}, timeout=BOOT_TIMEOUT)[uuid]
    assert server["status"] == "ACTIVE", server
    # A new instance directory (a new console log); the snapshot held the disk with its two boots.
    assert _markers(api, uuid, 1) == [3]
