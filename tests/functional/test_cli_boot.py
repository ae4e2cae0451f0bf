"""The acceptance scenario: the unmodified openstack CLI against real Stratus processes, on every backend."""
from __future__ import annotations

import http.client
import json
import time

import pytest

pytestmark = pytest.mark.services


def wait_status(stack, server: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = stack.openstack_json("server", "show", server)
        if info["status"] == status or time.monotonic() > deadline:
            assert info["status"] == status, info
            return info
        time.sleep(0.5)


def test_cli_server_lifecycle(stack, tmp_path):
    # The console script itself, as a new process (later commands run the same code in the fork server's children)
    token = json.loads(stack.openstack("token", "issue", "-f", "json", executable=True).stdout)
    assert token["id"] and token["project_id"]

    image_file = tmp_path / "disk.img"
    image_file.write_bytes(b"\x00" * 4096 + b"stratus test image")
    image = stack.openstack_json("image", "create", "--file", str(image_file), "--disk-format", "raw",
                                 "--container-format", "bare", "cli-image")
    assert image["status"] == "active"

    flavors = {f["Name"] for f in stack.openstack_json("flavor", "list")}
    assert "m1.nano" in flavors

    key = stack.openstack("keypair", "create", "cli-key").stdout
    assert "PRIVATE KEY" in key

    server = stack.openstack_json("server", "create", "--image", "cli-image", "--flavor", "m1.nano", "--key-name",
                                  "cli-key", "--wait", "cli-vm")
    assert server["status"] == "ACTIVE"
    assert server["OS-EXT-STS:power_state"] in ("Running", 1)
    assert server["OS-EXT-SRV-ATTR:host"] in ("fake-1", "fake-2")

    listed = {s["Name"]: s for s in stack.openstack_json("server", "list")}
    assert listed["cli-vm"]["Status"] == "ACTIVE"

    shown = stack.openstack_json("server", "show", "cli-vm")
    assert shown["id"] == server["id"] and shown["key_name"] == "cli-key"

    stack.openstack("server", "stop", "cli-vm")
    stopped = wait_status(stack, "cli-vm", "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] in ("Shutdown", 4)

    stack.openstack("server", "start", "cli-vm")
    wait_status(stack, "cli-vm", "ACTIVE")

    stack.openstack("server", "reboot", "--wait", "cli-vm")
    rebooted = wait_status(stack, "cli-vm", "ACTIVE")
    assert rebooted["OS-EXT-STS:task_state"] is None

    log = stack.openstack("console", "log", "show", "cli-vm").stdout
    assert "powered off" in log and "rebooted (soft)" in log

    actions = stack.openstack_json("server", "event", "list", "cli-vm")
    assert [a["Action"] for a in actions] == ["reboot", "start", "stop", "create"]
    create = next(a for a in actions if a["Action"] == "create")
    detail = stack.openstack_json("server", "event", "show", "cli-vm", create["Request ID"])
    assert [e["event"] for e in detail["events"]] == ["compute__do_build_and_run_instance"]
    assert detail["events"][0]["result"] == "Success"

    stack.openstack("server", "delete", "--wait", "cli-vm")
    assert "cli-vm" not in stack.openstack("server", "list", "-f", "value", "-c", "Name").stdout
    events = stack.openstack_json("server", "list", "--deleted", "--name", "cli-vm")
    assert events and events[0]["Status"] == "DELETED"


def test_no_valid_host_fault_names_the_filter(stack):
    stack.openstack("flavor", "create", "--ram", "40000", "--disk", "1", "--vcpus", "1", "huge")
    stack.openstack("image", "create", "--file", "/dev/null", "--disk-format", "raw", "--container-format",
                    "bare", "empty-image")
    stack.openstack("server", "create", "--image", "empty-image", "--flavor", "huge", "too-big")
    stack.wait_server("too-big", "ERROR")
    info = stack.openstack_json("server", "show", "too-big")
    assert info["status"] == "ERROR"
    assert "No valid host was found" in info["fault"]["message"]
    assert "RamFilter removed 2 of 2 hosts" in info["fault"]["message"]
    stack.openstack("server", "delete", "too-big")
    stack.wait_server(info["id"], "DELETED")


def test_admin_fleet_views(stack):
    services = stack.openstack_json("compute", "service", "list", "--service", "nova-compute")
    assert {(s["Host"], s["State"], s["Status"]) for s in services} == {("fake-1", "up", "enabled"),
                                                                         ("fake-2", "up", "enabled")}
    # Nova's binaries: the conductor and the scheduler report their own heartbeats, in the internal zone.
    everything = stack.openstack_json("compute", "service", "list")
    assert {(s["Binary"], s["Zone"], s["State"]) for s in everything if s["Binary"] != "nova-compute"} == {
        ("nova-conductor", "internal", "up"), ("nova-scheduler", "internal", "up")}
    assert stack.openstack_json("compute", "service", "list", "--service", "stratus-compute") == []
    hypervisors = stack.openstack_json("hypervisor", "list")
    assert {h["Hypervisor Hostname"] for h in hypervisors} == {"fake-1", "fake-2"}
    assert {h["Hypervisor Type"] for h in hypervisors} == {"fake"}
    svc = next(s for s in services if s["Host"] == "fake-2")
    stack.openstack("compute", "service", "set", "--disable", "--disable-reason", "maintenance", "fake-2",
                    "nova-compute")
    try:
        state = {s["Host"]: s for s in stack.openstack_json("compute", "service", "list", "--long")}
        assert state["fake-2"]["Status"] == "disabled" and state["fake-2"]["Disabled Reason"] == "maintenance"
        # A disabled host takes no boots: the scheduler explains it.
        stack.openstack("flavor", "create", "--ram", "20000", "--disk", "1", "--vcpus", "1", "big-one")
        stack.openstack("image", "create", "--file", "/dev/null", "--disk-format", "raw", "--container-format",
                        "bare", "svc-image")
        stack.openstack("server", "create", "--image", "svc-image", "--flavor", "big-one", "on-enabled-host")
        info = stack.wait_server("on-enabled-host", "ACTIVE")
        assert info["OS-EXT-SRV-ATTR:host"] == "fake-1"
        stack.openstack("server", "delete", "on-enabled-host")
        stack.wait_server(info["id"], "DELETED")
    finally:
        stack.openstack("compute", "service", "set", "--enable", "fake-2", "nova-compute")
    assert svc["ID"]


def test_idle_keepalive_connection_outlives_the_cli_polling_interval(stack):
    """`openstack ... --wait` polls every 2 s on one kept-alive connection: the API must not close it at 2 s
    (gunicorn's default keepalive), or a poll meets a closed socket ("Remote end closed connection")."""
    host, port = stack.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            assert response.status in (200, 300), response.status
            time.sleep(2.5)
        conn.request("GET", "/")
        assert conn.getresponse().status in (200, 300)  # on a socket the server closed: RemoteDisconnected
    finally:
        conn.close()
