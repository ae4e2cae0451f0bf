"""Operators see every boot step in Flower, and no secret reaches the broker, Flower, the result backend or the
logs (the scan at the end of this module reads every log file of the session's stack, so what earlier test modules
did on that stack is scanned too)."""
from __future__ import annotations

import base64
import json
import re
import threading
import time

import pytest
import requests

from harness.stack import free_port, procfile_commands
from tests.functional import secret_scan

pytestmark = pytest.mark.services

ADMIN_PASS = "Sup3r-Secret-AdminPass"
USER_DATA = "#!/bin/sh\necho stratus-user-data-secret-0451\n"
BOOT_STEPS = ["stratus.scheduler.schedule", "stratus.conductor.claim", "stratus.compute.build",
              "stratus.conductor.finish_boot"]


@pytest.fixture(scope="module")
def flower(stack):
    port = free_port()
    stack.env["STRATUS_FLOWER_PORT"] = str(port)
    stack.env["STRATUS_FLOWER_AUTH"] = "ops:flower-pw"
    stack.start_process("flower", procfile_commands()["flower"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/api/workers", auth=("ops", "flower-pw"), timeout=5).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        pytest.fail("flower did not start:\n" + stack.log("flower")[-3000:])
    assert requests.get(f"{url}/api/tasks", timeout=5).status_code == 401  # basic auth is on
    # Flower sees events only once its receiver is subscribed: wait until it has seen a compute heartbeat.
    deadline = time.monotonic() + 60
    while not any(t["name"] == "stratus.conductor.heartbeat" for t in requests.get(
            f"{url}/api/tasks", auth=("ops", "flower-pw"), timeout=10).json().values()):
        assert time.monotonic() < deadline, "Flower saw no task events:\n" + stack.log("flower")[-3000:]
        time.sleep(0.5)
    yield url
    stack.stop_process("flower")


class RedisMonitor:
    """Records every command the Redis broker receives (message bodies included)."""

    def __init__(self, url: str):
        import redis
        self.client = redis.Redis.from_url(url)
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with self.client.monitor() as m:
            for cmd in m.listen():
                self.seen.append(str(cmd.get("command", "")))
                if self.stop.is_set():
                    return

    def __enter__(self):
        self.thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.client.ping()  # wake the monitor loop
        self.thread.join(timeout=5)


def test_boot_steps_in_flower_and_no_secrets_anywhere(stack, flower):
    token = stack.admin_token()
    hdrs = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.96"}
    img = requests.post(f"{stack.url}/image/v2/images", headers=hdrs, json={
        "name": "flower-img", "disk_format": "raw", "container_format": "bare"}).json()
    requests.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=b"y" * 256,
                 headers={**hdrs, "Content-Type": "application/octet-stream"}).raise_for_status()
    body = {"server": {"name": "flower-vm", "imageRef": img["id"], "flavorRef": "42", "networks": "none",
                       "adminPass": ADMIN_PASS, "user_data": base64.b64encode(USER_DATA.encode()).decode(),
                       # the user data then goes to the compute host for its config drive, sealed for that host
                       "config_drive": True}}
    monitor = RedisMonitor(stack.env["STRATUS_BROKER_URL"]) if stack.backend.broker == "redis" else None
    if monitor:
        monitor.__enter__()
    try:
        r = requests.post(f"{stack.url}/v2.1/servers", headers=hdrs, json=body)
        assert r.status_code == 202, r.text
        server_id = r.json()["server"]["id"]
        assert r.json()["server"]["adminPass"] == ADMIN_PASS
        deadline = time.monotonic() + 60
        while requests.get(f"{stack.url}/v2.1/servers/{server_id}", headers=hdrs).json().get("server", {}).get("status") \
                != "ACTIVE":
            assert time.monotonic() < deadline, "server did not become ACTIVE"
            time.sleep(0.2)
    finally:
        if monitor:
            monitor.__exit__()

    # Flower shows each step of this boot.
    deadline = time.monotonic() + 30
    while True:
        tasks = requests.get(f"{flower}/api/tasks", auth=("ops", "flower-pw"), timeout=10).json()
        mine = {t["name"]: t for t in tasks.values() if server_id in (t.get("args") or "")}
        done = all(mine.get(step, {}).get("state") == "SUCCESS" for step in BOOT_STEPS)
        if done or time.monotonic() > deadline:  # Flower's view of the events may lag the DB a little
            break
        time.sleep(1)
    assert all(step in mine for step in BOOT_STEPS), sorted(mine)
    assert all(mine[step]["state"] == "SUCCESS" for step in BOOT_STEPS), {k: v["state"] for k, v in mine.items()}

    # No secret in what Flower shows, in the logs, or (Redis) in the raw broker traffic.
    secrets = [ADMIN_PASS, "stratus-user-data-secret-0451", base64.b64encode(USER_DATA.encode()).decode()]
    shown = str(tasks)
    logs = "".join(stack.log(n) for n in ("api", "conductor", "scheduler", "compute", "flower"))
    for secret in secrets:
        assert secret not in shown
        assert secret not in logs
    if monitor:
        raw = "\n".join(monitor.seen)
        assert "stratus.conductor.create_instances" in raw  # the monitor did see the message
        # the message bodies (base64 on Redis), decoded: the spec for the compute carries the user data sealed
        bodies = "\n".join(base64.b64decode(b).decode(errors="replace")
                           for b in re.findall(r'body\\?":\s*\\?"([A-Za-z0-9+/=]{16,})', raw))
        assert "x25519-chacha20poly1305:" in bodies, "the compute's spec (its user data sealed) was not seen"
        for secret in secrets:
            assert secret not in bodies
        for secret in secrets:
            assert secret not in raw
    create = [t for t in tasks.values() if t["name"] == "stratus.conductor.create_instances"]
    assert create and all("<redacted>" in (t.get("args") or "") for t in create)
    requests.delete(f"{stack.url}/v2.1/servers/{server_id}", headers=hdrs)


def test_no_secret_in_any_log_flower_or_result_backend(stack, flower):
    """After the stack's other work: a user's password, a generated private key, adminPass, user-data and every
    token issued appear in no log file, in nothing Flower lists and in no stored task result."""
    admin = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.91"}
    user_password = "Scan-User-Pw-7731"
    project = requests.post(f"{stack.url}/identity/v3/projects", headers=admin,
                            json={"project": {"name": "scan-proj"}}).json()["project"]
    user = requests.post(f"{stack.url}/identity/v3/users", headers=admin, json={"user": {
        "name": "scan-user", "password": user_password, "default_project_id": project["id"]}}).json()["user"]
    member = {r["name"]: r["id"] for r in requests.get(f"{stack.url}/identity/v3/roles",
                                                         headers=admin).json()["roles"]}["member"]
    requests.put(f"{stack.url}/identity/v3/projects/{project['id']}/users/{user['id']}/roles/{member}",
                 headers=admin).raise_for_status()
    token = stack.token("scan-user", user_password, "scan-proj")
    hdrs = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.91"}
    key = requests.post(f"{stack.url}/v2.1/os-keypairs", headers=hdrs, json={"keypair": {"name": "scan-key"}})
    assert key.status_code == 201, key.status_code  # (its body holds the private key: not shown)
    private_key = key.json()["keypair"]["private_key"]
    assert "PRIVATE KEY" in private_key
    img = requests.post(f"{stack.url}/image/v2/images", headers=hdrs, json={
        "name": "scan-img", "disk_format": "raw", "container_format": "bare"}).json()
    requests.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=b"s" * 256,
                 headers={**hdrs, "Content-Type": "application/octet-stream"}).raise_for_status()
    r = requests.post(f"{stack.url}/v2.1/servers", headers=hdrs, json={"server": {
        "name": "scan-vm", "imageRef": img["id"], "flavorRef": "42", "networks": "none", "key_name": "scan-key",
        "adminPass": ADMIN_PASS, "user_data": base64.b64encode(USER_DATA.encode()).decode()}})
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    deadline = time.monotonic() + 60
    while requests.get(f"{stack.url}/v2.1/servers/{server_id}", headers=hdrs).json()["server"]["status"] \
            != "ACTIVE":
        assert time.monotonic() < deadline, "server did not become ACTIVE"
        time.sleep(0.2)
    # a password change (its tokens revoked) and a failed sign-in with a near-miss password, both logged nowhere
    requests.post(f"{stack.url}/identity/v3/users/{user['id']}/password", headers={"X-Auth-Token": token},
                  json={"user": {"password": user_password + "-2", "original_password": user_password}}
                  ).raise_for_status()
    assert requests.post(f"{stack.url}/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {"name": "scan-user", "domain": {"id": "default"},
                                                       "password": user_password + "-x"}}}}}).status_code == 401
    requests.delete(f"{stack.url}/v2.1/servers/{server_id}", headers=admin)
    time.sleep(2)  # the last log lines and Flower's events

    where = secret_scan.places(stack)
    assert {"api.log", "conductor.log", "scheduler.log", "compute.log", "flower.log"} <= set(where), sorted(where)
    where["flower tasks"] = json.dumps(requests.get(f"{flower}/api/tasks", auth=("ops", "flower-pw"),
                                                    timeout=10).json())
    assert server_id in where["flower tasks"]
    key_lines = [line for line in private_key.splitlines() if len(line) >= 40 and "PRIVATE KEY" not in line]
    found = secret_scan.scan(stack, where, {
        "a user's password": user_password, "a user's new password": user_password + "-2",
        "a failed sign-in's password": user_password + "-x", "adminPass": ADMIN_PASS,
        "user-data": "stratus-user-data-secret-0451",
        "user-data (base64)": base64.b64encode(USER_DATA.encode()).decode(),
        **{f"private key line {i}": line for i, line in enumerate(key_lines)}})
    assert not found, "secrets found:\n" + "\n".join(found)
