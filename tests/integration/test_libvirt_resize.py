"""Resize of a real QEMU guest on its own host (allow_resize_to_same_host, compute_driver = libvirt), through real
Stratus processes and the REST API: the domain gets the new memory, vCPUs and a grown disk, revert brings the old
ones back, confirm drops the kept backup, and the host's usage holds both flavors only while the resize waits for
confirmation. One TCG guest (boots are slow on two cores)."""
from __future__ import annotations

import functools
import json
import re
import subprocess
import time

import pytest

from tests.libvirt_support import compute_call as _call
from tests.libvirt_support import (console_count, domstate, libvirt_stack, require_test_image, upload_test_image,
                                   virsh, wait_console_count, wait_server_status)
from tests.outage_support import Client

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

HOST = "kvm-resize"
TIMEOUT = 240
GiB = 1 << 30
UP = "STRATUS-GUEST-UP hostname=lv-resize"


_wait_status = functools.partial(wait_server_status, timeout=TIMEOUT)
_boots = functools.partial(console_count, marker=UP)
_wait_boots = functools.partial(wait_console_count, marker=UP, timeout=TIMEOUT)


def _usage(api: Client) -> tuple[int, int, int]:
    (hyp,) = _call(api, "GET", "/os-hypervisors/detail").json()["hypervisors"]
    return hyp["memory_mb_used"], hyp["vcpus_used"], hyp["running_vms"]


def _domain(stack, uuid: str) -> tuple[int, int, int]:
    """(max memory MiB, CPUs) from virsh dominfo and the disk's virtual size from qemu-img info."""
    info = virsh("dominfo", uuid).stdout
    mem_kib = int(re.search(r"Max memory:\s+(\d+) KiB", info).group(1))
    cpus = int(re.search(r"CPU\(s\):\s+(\d+)", info).group(1))
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(stack.instances / uuid / "disk")],
                         capture_output=True, text=True, check=True).stdout
    return mem_kib // 1024, cpus, json.loads(out)["virtual-size"]


def _serial_port(uuid: str) -> int:
    """The TCP port of the domain's serial console (a raw listener in bind mode)."""
    found = re.search(r"<serial type='tcp'>\s*<source mode='bind' host='[^']*' service='(\d+)'",
                      virsh("dumpxml", uuid).stdout)
    assert found, virsh("dumpxml", uuid).stdout
    return int(found.group(1))


@pytest.fixture(scope="module")
def stack(request):
    image_dir = require_test_image()
    failed = request.session.testsfailed
    with libvirt_stack("libvirt-resize", HOST, extra_env={"STRATUS_ALLOW_RESIZE_TO_SAME_HOST": "true"},
                       keep_logs=lambda: request.session.testsfailed != failed) as st:
        st.image_dir = image_dir
        yield st


def test_resize_on_the_same_host_revert_then_confirm(stack):
    api = Client(stack)
    image, small = upload_test_image(api, stack.image_dir)
    r = _call(api, "POST", "/flavors", {"flavor": {"name": "guest.resized", "ram": 192, "vcpus": 2, "disk": 2}})
    assert r.status_code == 200, r.text
    big = r.json()["flavor"]["id"]
    mem0, cpu0, vms0 = _usage(api)

    r = api.boot(image, "lv-resize", flavor=small)
    assert r.status_code == 202, r.text
    uuid = r.json()["server"]["id"]
    _wait_status(api, uuid, "ACTIVE")
    _wait_boots(api, uuid, 1)
    backup = stack.instances / f"{uuid}_resize"
    assert _domain(stack, uuid) == (128, 1, GiB)
    assert _usage(api) == (mem0 + 128, cpu0 + 1, vms0 + 1)
    serial_port = _serial_port(uuid)

    # resize: the same host holds the old flavor (the migration's allocation) and the new one until confirm/revert
    r = _call(api, "POST", f"/servers/{uuid}/action", {"resize": {"flavorRef": big}})
    assert r.status_code == 202, r.text
    server = _wait_status(api, uuid, "VERIFY_RESIZE")
    assert server["OS-EXT-SRV-ATTR:host"] == HOST and server["flavor"]["original_name"] == "guest.resized"
    (mig,) = _call(api, "GET", f"/os-migrations?instance_uuid={uuid}", version="2.59").json()["migrations"]
    assert (mig["source_compute"], mig["dest_compute"], mig["status"]) == (HOST, HOST, "finished")
    assert _domain(stack, uuid) == (192, 2, 2 * GiB) and domstate(uuid) == "running"
    assert _serial_port(uuid) == serial_port, "the redefined domain keeps its serial console port"
    assert (backup / "disk").is_file() and (backup / "domain.xml").is_file()
    assert _usage(api)[:2] == (mem0 + 128 + 192, cpu0 + 1 + 2)
    _wait_boots(api, uuid, 2)

    # revert: the old disk and definition come back, the new flavor's resources go
    assert _call(api, "POST", f"/servers/{uuid}/action", {"revertResize": None}).status_code == 202
    server = _wait_status(api, uuid, "ACTIVE")
    assert server["flavor"]["original_name"] == "guest.tiny"
    assert _domain(stack, uuid) == (128, 1, GiB) and domstate(uuid) == "running"
    assert not backup.exists()
    assert _usage(api) == (mem0 + 128, cpu0 + 1, vms0 + 1)
    _wait_boots(api, uuid, 3)

    # resize again and confirm: the new flavor stays, the backup and the old flavor's resources go
    assert _call(api, "POST", f"/servers/{uuid}/action", {"resize": {"flavorRef": big}}).status_code == 202
    _wait_status(api, uuid, "VERIFY_RESIZE")
    assert _usage(api)[:2] == (mem0 + 128 + 192, cpu0 + 1 + 2)
    assert _call(api, "POST", f"/servers/{uuid}/action", {"confirmResize": None}).status_code == 204
    server = _wait_status(api, uuid, "ACTIVE")
    assert server["flavor"]["original_name"] == "guest.resized"
    deadline = time.monotonic() + 60
    while backup.exists() and time.monotonic() < deadline:  # the compute step runs after the 204
        time.sleep(0.5)
    assert not backup.exists()
    assert _domain(stack, uuid) == (192, 2, 2 * GiB) and domstate(uuid) == "running"
    assert _usage(api) == (mem0 + 192, cpu0 + 2, vms0 + 1)
    _wait_boots(api, uuid, 4)

    assert api.delete(uuid) == 204
    assert api.wait_gone(TIMEOUT) == []
    assert domstate(uuid) == "absent" and not (stack.instances / uuid).exists() and not backup.exists()
    assert _usage(api) == (mem0, cpu0, vms0)
