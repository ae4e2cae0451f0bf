"""Periodic housekeeping: a BUILD stuck on a dead compute host goes to ERROR and gives its claim back."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from tests.outage_support import Client
from harness.stack import BACKENDS, REPO, Stack


@pytest.fixture(scope="module")
def quick_timeout_stack(tmp_path_factory):
    backend = BACKENDS["sqlite-filesystem"]
    st = Stack(tmp_path_factory.mktemp("housekeeping"), backend, compute_hosts="fake-1",
               extra_env={"STRATUS_INSTANCE_BUILD_TIMEOUT": "2"})
    st.start()
    yield st
    st.stop()


def run_task(stack: Stack, name: str) -> object:
    """Call a periodic task the way beat does (by name, through the broker) and wait for it."""
    code = (f"from tasks.messaging.celery_app import celery; print(celery.send_task({name!r}, queue='conductor')"
            ".get(timeout=60))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=stack.env, capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_stuck_build_expires_and_releases_claim(quick_timeout_stack):
    stack = quick_timeout_stack
    hdrs = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.96"}
    image = Client(stack).upload("hk", b"z" * 64, "raw", "bare")
    stack.stop_process("compute")  # the host dies: the boot will stay in BUILD after its claim
    r = requests.post(f"{stack.url}/v2.1/servers", headers=hdrs, json={"server": {
        "name": "stuck", "imageRef": image, "flavorRef": "42", "networks": "none"}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    deadline = time.monotonic() + 30
    while True:
        server = requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"]
        if server["OS-EXT-STS:task_state"] == "spawning" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert server["status"] == "BUILD" and server["OS-EXT-STS:task_state"] == "spawning"
    time.sleep(2.5)
    assert run_task(stack, "stratus.conductor.expire_stuck_instances") == "1"
    server = requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"]
    assert server["status"] == "ERROR"
    assert "build timed out" in server["fault"]["message"]
    hyp = requests.get(f"{stack.url}/v2.1/os-hypervisors/detail", headers={**hdrs, "OpenStack-API-Version":
                                                                           "compute 2.87"}).json()
    assert hyp["hypervisors"][0]["memory_mb_used"] == 0 and hyp["hypervisors"][0]["running_vms"] == 0
    assert run_task(stack, "stratus.conductor.audit_allocations") == "0"


def test_conductor_start_expires_builds_a_crash_left(quick_timeout_stack):
    """No beat here: the conductor itself, when it starts, fails the builds stuck past instance_build_timeout."""
    import signal

    from harness.stack import procfile_commands
    stack = quick_timeout_stack
    hdrs = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.96"}
    image = Client(stack).upload("hk2", b"z" * 64, "raw", "bare")
    stack.stop_process("compute")  # the build stops after its claim
    r = requests.post(f"{stack.url}/v2.1/servers", headers=hdrs, json={"server": {
        "name": "crashed", "imageRef": image, "flavorRef": "42", "networks": "none"}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"][
            "OS-EXT-STS:task_state"] != "spawning" and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.stop_process("conductor", signal.SIGKILL)
    time.sleep(2.5)  # past instance_build_timeout (2 s)
    stack.start_process("conductor", procfile_commands()["conductor"])
    deadline = time.monotonic() + 60
    while (server := requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"])[
            "status"] != "ERROR" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server["status"] == "ERROR" and "build timed out" in server["fault"]["message"], server
    assert run_task(stack, "stratus.conductor.audit_allocations") == "0"


@pytest.fixture(scope="module")
def quick_resume_stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("resume"), BACKENDS["sqlite-filesystem"], compute_hosts="fake-1",
               extra_env={"STRATUS_STALLED_BUILD_RESUME_AFTER": "1"})
    st.start()
    yield st
    st.stop()


@pytest.mark.parametrize("dead_worker, queue, task_state", [
    ("scheduler", "scheduler", "scheduling"), ("compute", "compute.fake-1", "spawning")])
def test_a_boot_whose_message_was_lost_is_resumed_once(quick_resume_stack, dead_worker, queue, task_state):
    """The broker loses the message of a boot's current step (purged here; Redis can do it when it stops right
    after handing a message out): the beat task sends that step again and the boot ends ACTIVE, with an event."""
    from harness.stack import procfile_commands
    stack = quick_resume_stack
    api = Client(stack)
    hdrs = api.headers
    image = api.upload(f"lost-{dead_worker}", b"z" * 64, "raw", "bare")
    stack.stop_process(dead_worker)
    r = api.boot(image, f"lost-{dead_worker}")
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"][
            "OS-EXT-STS:task_state"] != task_state and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the step's message is on its queue now
    purged = stack.run(".venv/bin/celery", "-A", "tasks.messaging.celery_app", "purge", "-f", "-Q", queue)
    assert purged.stdout.startswith("Purged ") and "Purged 0 " not in purged.stdout, purged.stdout + purged.stderr
    # Nothing is sent to a queue no live worker consumes: not resumed while the worker is down.
    assert run_task(stack, "stratus.conductor.resume_stalled_builds") == "0"
    stack.start_process(dead_worker, procfile_commands()[dead_worker])
    time.sleep(1.5)  # past stalled_build_resume_after (1 s)
    deadline = time.monotonic() + 60  # resumed once the restarted worker consumes its queue
    while (resumed := run_task(stack, "stratus.conductor.resume_stalled_builds")) == "0" and \
            time.monotonic() < deadline:
        time.sleep(1)
    assert resumed == "1"
    assert run_task(stack, "stratus.conductor.resume_stalled_builds") == "0", "a boot is resumed only once"
    deadline = time.monotonic() + 60
    while (server := requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"])[
            "status"] == "BUILD" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server["status"] == "ACTIVE", server
    actions = requests.get(f"{stack.url}/v2.1/servers/{sid}/os-instance-actions", headers=hdrs).json()
    req = actions["instanceActions"][0]["request_id"]
    events = requests.get(f"{stack.url}/v2.1/servers/{sid}/os-instance-actions/{req}", headers=hdrs).json()
    names = [e["event"] for e in events["instanceAction"]["events"]]
    assert "conductor_resume_build" in names and "compute__do_build_and_run_instance" in names, names


@pytest.mark.parametrize("action, body, task_state, status", [
    ("stop", {"os-stop": None}, "powering-off", "SHUTOFF"),
    ("reboot", {"reboot": {"type": "SOFT"}}, "rebooting", "ACTIVE"),
    ("createImage", {"createImage": {"name": "lost-snap"}}, "image_snapshot", "ACTIVE")])
def test_an_action_whose_message_was_lost_is_resumed_once(quick_resume_stack, action, body, task_state, status):
    """The compute's message of a server action is lost (purged here; a worker SIGKILLed between Redis's BRPOP
    and kombu's unacked registration loses it the same way): the beat task sends the action's canvas again once
    the host's worker consumes, and the server reaches the action's end state, with an event in its action."""
    from harness.stack import procfile_commands
    stack = quick_resume_stack
    api = Client(stack)
    hdrs = api.headers
    image = api.upload(f"act-{action}", b"z" * 64, "raw", "bare")
    sid = api.boot(image, f"act-{action}").json()["server"]["id"]
    assert api.wait_settled({sid}, 60)[sid]["status"] == "ACTIVE"
    stack.stop_process("compute")
    r = requests.post(f"{stack.url}/v2.1/servers/{sid}/action", headers=hdrs, json=body)
    assert r.status_code == 202, r.text
    image_id = r.json().get("image_id") if action == "createImage" else None
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"][
            "OS-EXT-STS:task_state"] != task_state and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the step's message is on its queue now
    purged = stack.run(".venv/bin/celery", "-A", "tasks.messaging.celery_app", "purge", "-f", "-Q",
                       "compute.fake-1")
    assert purged.stdout.startswith("Purged ") and "Purged 0 " not in purged.stdout, purged.stdout + purged.stderr
    assert run_task(stack, "stratus.conductor.resume_stalled_builds") == "0", "sent to a queue nobody consumes"
    stack.start_process("compute", procfile_commands()["compute"])
    time.sleep(1.5)  # past stalled_build_resume_after (1 s)
    deadline = time.monotonic() + 60
    while (resumed := run_task(stack, "stratus.conductor.resume_stalled_builds")) == "0" and \
            time.monotonic() < deadline:
        time.sleep(1)
    assert resumed == "1"
    assert run_task(stack, "stratus.conductor.resume_stalled_builds") == "0", "an action is resumed only once"
    deadline = time.monotonic() + 60
    while (server := requests.get(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).json()["server"])[
            "OS-EXT-STS:task_state"] is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server["status"] == status and server["OS-EXT-STS:task_state"] is None, server
    assert "fault" not in server, server
    actions = requests.get(f"{stack.url}/v2.1/servers/{sid}/os-instance-actions", headers=hdrs).json()
    req = next(a["request_id"] for a in actions["instanceActions"] if a["action"] == action)
    events = requests.get(f"{stack.url}/v2.1/servers/{sid}/os-instance-actions/{req}", headers=hdrs).json()
    names = [e["event"] for e in events["instanceAction"]["events"]]
    assert "conductor_resume_task" in names and len(names) == 2, names
    if image_id:
        img = requests.get(f"{stack.url}/image/v2/images/{image_id}", headers={"X-Auth-Token": hdrs["X-Auth-Token"]})
        assert img.json()["status"] == "active", img.text
    assert requests.delete(f"{stack.url}/v2.1/servers/{sid}", headers=hdrs).status_code == 204
