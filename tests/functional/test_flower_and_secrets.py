"""Operators see every boot step in Flower, and no secret reaches the broker, Flower, the result backend or the
logs (the scan at the end of this module reads every log file of the session's stack, so what earlier test modules
did on that stack is scanned too)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests

from harness.stack import ADMIN_PASSWORD, free_port, procfile_commands

pytestmark = pytest.mark.services

ADMIN_PASS = "Sup3r-Secret-AdminPass"
USER_DATA = "#!/bin/sh\necho stratus-user-data-secret-0451\n"
BOOT_STEPS = ["stratus.scheduler.schedule", "stratus.conductor.claim", "stratus.compute.build_disk",
              "stratus.compute.spawn", "stratus.conductor.finish_boot"]


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
                       "adminPass": ADMIN_PASS, "user_data": base64.b64encode(USER_DATA.encode()).decode()}}
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
        for secret in secrets:
            assert secret not in raw
    create = [t for t in tasks.values() if t["name"] == "stratus.conductor.create_instances"]
    assert create and all("<redacted>" in (t.get("args") or "") for t in create)
    requests.delete(f"{stack.url}/v2.1/servers/{server_id}", headers=hdrs)


# A bearer token as Stratus makes them (secrets.token_urlsafe(32)): 43 URL-safe characters.
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


def _result_backend_text(stack) -> str:
    """Every stored task result: the filesystem backend's files, or Redis's celery-task-meta keys (RabbitMQ's
    rpc:// backend keeps none: replies are messages to their caller)."""
    if stack.backend.broker == "filesystem":
        return "\n".join(p.read_text(errors="replace") for p in (stack.state_dir / "results").rglob("*")
                         if p.is_file())
    if stack.backend.broker == "redis":
        import redis
        client = redis.Redis.from_url(stack.env["STRATUS_BROKER_URL"])
        return "\n".join(str(client.get(k)) for k in client.scan_iter("celery-task-meta-*"))
    return ""


def _leaked_tokens(stack, text: str) -> list[str]:
    """Every string in ``text`` shaped like a token whose hash is a token the stack issued (any test's, any
    client's: the database keeps only hashes)."""
    from sqlalchemy import create_engine, text as sql
    url = stack.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{stack.state_dir / 'stratus.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            issued = {row[0] for row in c.execute(sql("SELECT id_hash FROM tokens"))}
    finally:
        engine.dispose()
    assert issued, "the stack issued no token?"
    return sorted({t for t in _TOKEN_LIKE.findall(text) if hashlib.sha256(t.encode()).hexdigest() in issued})


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

    logs = {p: p.read_text(errors="replace") for p in sorted(Path(stack.state_dir).rglob("*.log"))}
    assert {"api", "conductor", "scheduler", "compute", "flower"} <= {p.stem for p in logs}, sorted(logs)
    places = {**{str(p.relative_to(stack.state_dir)): text for p, text in logs.items()},
              "flower tasks": json.dumps(requests.get(f"{flower}/api/tasks", auth=("ops", "flower-pw"),
                                                      timeout=10).json()),
              "result backend": _result_backend_text(stack)}
    assert "scan-vm" in places["flower tasks"] or server_id in places["flower tasks"]
    key_lines = [line for line in private_key.splitlines() if len(line) >= 40 and "PRIVATE KEY" not in line]
    secrets = {"the admin password": ADMIN_PASSWORD, "a user's password": user_password,
               "a user's new password": user_password + "-2", "a failed sign-in's password": user_password + "-x",
               "adminPass": ADMIN_PASS, "user-data": "stratus-user-data-secret-0451",
               "user-data (base64)": base64.b64encode(USER_DATA.encode()).decode(),
               "the private key": private_key, **{f"private key line {i}": line for i, line in enumerate(key_lines)}}
    found = [f"{what} in {place}" for place, text in places.items() for what, value in secrets.items()
             if value in text]
    found += [f"token {t[:6]}... in {place}" for place, text in places.items() for t in _leaked_tokens(stack, text)]
    assert not found, "secrets found:\n" + "\n".join(found)
