"""Issue 10 acceptance, end to end: the unmodified openstack CLI against real Stratus processes (api, conductor,
scheduler, compute) whose compute workers run the VMware driver against vcsim.

One stack, two compute workers on the same simulator: ``vc-1`` with the right credentials, and ``vc-bad`` (its
own process, its own availability zone ``bad-az``) with a wrong password. vSphere state is observed through a
separate pyVmomi connection (tests/vcsim.py), never through Stratus; actions go through the ``openstack`` CLI,
and waits poll the API directly (each CLI run costs seconds of Python start-up).
"""
from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import signal
import subprocess
import time

import pytest
import requests
from pyVim.connect import Disconnect

from tests import vcsim as vc
from harness.stack import BACKENDS, REPO, Stack, procfile_commands

pytestmark = pytest.mark.vmware

REPORT_INTERVAL = 1  # seconds: the compute workers' report/retry interval in this stack
BAD_HOST, BAD_AZ = "vc-bad", "bad-az"


def _vmware_env(sim: dict, password: str) -> dict[str, str]:
    return {
        "STRATUS_COMPUTE_DRIVER": "vmware",
        "STRATUS_VMWARE_HOST": "127.0.0.1",
        "STRATUS_VMWARE_PORT": str(sim["port"]),
        "STRATUS_VMWARE_PROTOCOL": "http",
        "STRATUS_VMWARE_USER": sim["user"],
        "STRATUS_VMWARE_PASSWORD": password,
        "STRATUS_VMWARE_INSECURE": "0",
        "STRATUS_VMWARE_TASK_TIMEOUT": "30",
        "STRATUS_REPORT_INTERVAL": str(REPORT_INTERVAL),
    }


def _stop_all(st: Stack) -> None:
    """SIGTERM every process at once (warm shutdowns overlap), then let Stack.stop reap them."""
    for proc in st.procs.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    st.stop()


@pytest.fixture(scope="module")
def bad_password():
    return "wrong-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def stack(vcsim, bad_password, tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("vmware-cli"), BACKENDS["sqlite-filesystem"], compute_hosts="vc-1",
               extra_env=_vmware_env(vcsim, vcsim["password"]))
    try:
        st.start()
        # The second compute worker: same simulator, wrong password, its own host, zone and log file.
        env = {**st.env, **st.compute_env(), **_vmware_env(vcsim, bad_password), "STRATUS_COMPUTE_HOSTS": BAD_HOST,
               "STRATUS_AVAILABILITY_ZONE": BAD_AZ}
        log = open(st.state_dir / "compute-bad.log", "ab")
        st.procs["compute-bad"] = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_commands()['compute']}"], cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while st.registered_hosts() < 2:
            assert st.procs["compute-bad"].poll() is None, st.log("compute-bad")[-3000:]
            assert time.monotonic() < deadline, st.log("compute-bad")[-3000:]
            time.sleep(0.3)
    except BaseException:
        _stop_all(st)
        raise
    yield st
    _stop_all(st)


@pytest.fixture(scope="module")
def api(stack):
    """A requests session with an admin token, for cheap polling."""
    s = requests.Session()
    s.headers.update({"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.79"})
    yield s
    s.close()


@pytest.fixture(scope="module")
def admin(vcsim):
    si = vc.connect(vcsim)
    yield si
    Disconnect(si)


def server_by_name(stack: Stack, api: requests.Session, name: str) -> dict:
    r = api.get(f"{stack.url}/v2.1/servers/detail", params={"name": f"^{name}$"}, timeout=10)
    r.raise_for_status()
    (server,) = r.json()["servers"]
    return server


def wait_status(stack: Stack, api: requests.Session, name: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = server_by_name(stack, api, name)
        if (server["status"] == status and server["OS-EXT-STS:task_state"] is None) \
                or time.monotonic() > deadline:
            assert server["status"] == status, server
            return server
        time.sleep(0.2)


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def db_rows(stack: Stack, sql: str, **params) -> list:
    """Read the stack's database directly (as the API's readers do)."""
    from sqlalchemy import create_engine, text
    url = stack.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{stack.state_dir / 'stratus.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql), params)]
    finally:
        engine.dispose()


def service_state(stack: Stack, api: requests.Session, host: str) -> str:
    """'up' or 'down' for the host's compute service: `openstack compute service list` where the API has
    os-services; until then the rule the API applies (forced down, or not heard from in service_down_time)."""
    if api.get(f"{stack.url}/v2.1/os-services", timeout=10).status_code != 404:
        services = stack.openstack_json("compute", "service", "list", "--service", "nova-compute")
        (svc,) = [s for s in services if s["Host"] == host]
        return svc["State"]
    (row,) = db_rows(stack, "SELECT forced_down, last_seen_at FROM services WHERE host = :h "
                            "AND binary = 'nova-compute'", h=host)
    forced_down, last_seen = row
    if forced_down or last_seen is None:
        return "down"
    if isinstance(last_seen, str):
        last_seen = dt.datetime.fromisoformat(last_seen)
    if last_seen.tzinfo is None:
        last_seen = last_seen.replace(tzinfo=dt.timezone.utc)
    return "up" if (dt.datetime.now(dt.timezone.utc) - last_seen).total_seconds() < 60 else "down"


def hypervisor_type(stack: Stack, api: requests.Session, host: str) -> str:
    if api.get(f"{stack.url}/v2.1/os-hypervisors", timeout=10).status_code != 404:
        listed = {h["Hypervisor Hostname"]: h for h in stack.openstack_json("hypervisor", "list")}
        detail = api.get(f"{stack.url}/v2.1/os-hypervisors/detail", timeout=10,
                         headers={"OpenStack-API-Version": "compute 2.53"}).json()["hypervisors"]
        (hv,) = [h for h in detail if h["service"]["host"] == host]
        return listed[hv["hypervisor_hostname"]]["Hypervisor Type"]
    ((kind,),) = db_rows(stack, "SELECT hypervisor_type FROM compute_nodes WHERE host = :h", h=host)
    return kind


def test_vmware_service_up(stack, api):
    assert service_state(stack, api, "vc-1") == "up"
    assert hypervisor_type(stack, api, "vc-1") == "VMware vCenter Server"


@pytest.fixture(scope="module")
def image(stack, tmp_path_factory):
    """A small image uploaded with the CLI (the simulator does not care what is in a VMDK)."""
    path = tmp_path_factory.mktemp("image") / "disk.vmdk"
    path.write_bytes(b"# Disk DescriptorFile\n" + b"\x00" * 8192)
    img = stack.openstack_json("image", "create", "--file", str(path), "--disk-format", "vmdk",
                               "--container-format", "bare", "vmdk-image")
    assert img["status"] == "active" and img["disk_format"] == "vmdk"
    return img


def test_cli_server_lifecycle_on_vcsim(stack, api, admin, image):
    server = stack.openstack_json("server", "create", "--image", "vmdk-image", "--flavor", "m1.tiny",
                                  "--wait", "vm-cli")
    assert server["status"] == "ACTIVE", server
    assert server["OS-EXT-SRV-ATTR:host"] == "vc-1"
    assert server["OS-EXT-STS:power_state"] in ("Running", 1)
    uuid = server["id"]

    # The guest is a VM named after the instance UUID, powered on, with the flavor's shape and Stratus's tags.
    (vm,) = vc.inventory_vms(admin, uuid)
    assert vm.runtime.powerState == "poweredOn"
    assert vm.config.instanceUuid == uuid
    assert vm.config.hardware.numCPU == 1 and vm.config.hardware.memoryMB == 512
    extra = {o.key: o.value for o in vm.config.extraConfig}
    assert extra["stratus.instance_uuid"] == uuid
    assert extra["stratus.host"] == "vc-1"
    assert extra["stratus.image_id"] == image["id"]
    assert extra["stratus.flavor"] == "m1.tiny"

    stack.openstack("server", "stop", "vm-cli")
    stopped = wait_status(stack, api, "vm-cli", "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4  # SHUTDOWN
    assert vc.power_state(admin, uuid) == "poweredOff"

    stack.openstack("server", "start", "vm-cli")
    started = wait_status(stack, api, "vm-cli", "ACTIVE")
    assert started["OS-EXT-STS:power_state"] == 1
    assert vc.power_state(admin, uuid) == "poweredOn"

    # vcsim has no VMware Tools: a soft reboot falls back to a reset.
    stack.openstack("server", "reboot", "--wait", "vm-cli")
    rebooted = wait_status(stack, api, "vm-cli", "ACTIVE")
    assert rebooted["OS-EXT-STS:power_state"] == 1
    assert vc.power_state(admin, uuid) == "poweredOn"

    stack.openstack("server", "delete", "--wait", "vm-cli")
    assert vc.inventory_vms(admin, uuid) == []
    r = api.get(f"{stack.url}/v2.1/servers/{uuid}", timeout=10)
    assert r.status_code == 404, r.text

    compute_log = stack.log("compute")
    assert stack.env["STRATUS_VMWARE_PASSWORD"] not in compute_log
    assert "Traceback" not in compute_log, compute_log[-3000:]


def test_bad_credentials_service_down_and_boot_faults(stack, api, vcsim, bad_password, image):
    # A clear line naming the host and the login failure, without any password.
    line_re = re.compile(rf"compute host {BAD_HOST}: .*login .* as user '{re.escape(vcsim['user'])}' failed.*",
                         re.IGNORECASE)
    line = wait_for(lambda: line_re.search(stack.log("compute-bad")), what="the login failure line").group(0)
    assert "InvalidLogin" in line or "incorrect user name or password" in line.lower(), line
    assert "vmware_password" in line, line
    seen_at, seen = time.monotonic(), len(line_re.findall(stack.log("compute-bad")))
    assert service_state(stack, api, BAD_HOST) == "down"
    assert service_state(stack, api, "vc-1") == "up"

    # A boot aimed at the broken host (its zone) fails with a fault that says why.
    proc = stack.openstack("server", "create", "--image", "vmdk-image", "--flavor", "m1.nano",
                           "--availability-zone", BAD_AZ, "--wait", "doomed", check=False)
    assert proc.returncode != 0
    info = stack.openstack_json("server", "show", "doomed")
    assert info["status"] == "ERROR", info
    message = info["fault"]["message"]
    assert "No valid host was found" in message and "ComputeFilter removed 1 of 2 hosts" in message, info["fault"]
    assert not info.get("OS-EXT-SRV-ATTR:host"), info

    # No crash loop: after a few report intervals the same worker process is still up and retries the login
    # each interval, without tracebacks; no password appears in any log.
    time.sleep(max(0.0, seen_at + 3 * REPORT_INTERVAL + 0.5 - time.monotonic()))
    worker = stack.procs["compute-bad"]
    assert worker.poll() is None, stack.log("compute-bad")[-3000:]
    log = stack.log("compute-bad")
    assert len(line_re.findall(log)) >= seen + 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    for name in stack.procs:
        text = stack.log(name)
        assert bad_password not in text, name
        assert vcsim["password"] not in text, name
    assert service_state(stack, api, BAD_HOST) == "down"

    # An ERROR server that never reached a host deletes cleanly.
    r = api.delete(f"{stack.url}/v2.1/servers/{info['id']}", timeout=10)
    assert r.status_code == 204, r.text
    wait_for(lambda: api.get(f"{stack.url}/v2.1/servers/{info['id']}", timeout=10).status_code == 404,
             what="the deleted server to disappear")
