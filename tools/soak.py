#!/usr/bin/env python
"""The chaos soak (`make soak`): a Stratus stack (harness/stack.py: the Procfile's processes) on private servers
that may be restarted (tests/outage_support.py), a mixed workload through the API at a steady rate from several
projects, every request and its answer written to a history file, while a chaos loop SIGKILLs a random Stratus
process every 20-60 s and starts it again, restarts the broker twice and the database once. Then it waits for
quiet and runs the invariant checker (bench/invariants.py) over the database, the fake guests and the history.

    python tools/soak.py [--duration 180] [--backend sqlite-fs|postgresql-redis|mariadb-rabbitmq] [--rate 3]
                         [--driver fake|libvirt]

sqlite-fs: neither the database (embedded SQLite) nor the broker (files) is a server, so there is nothing to
restart; mariadb-rabbitmq: the machine's shared MariaDB is not restarted (other runs use it), the broker is a
private RabbitMQ node. --driver libvirt: one compute host on the machine's libvirtd with real TCG guests (the test
guest of tools/build-test-image, 128 MB), resizes on the same host, at most LIBVIRT_MAX_SERVERS servers a project;
the checker compares the libvirt domains of the stack's instances path with the rows.
Exit 0: every invariant holds; 1: a violation; 2: the soak itself failed."""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench import invariants  # noqa: E402
from harness.stack import BACKENDS, Stack, console_proxy_env, procfile_commands  # noqa: E402
from tests.outage_support import (Client, PrivateBackend, PrivatePostgres, PrivateRabbitMQ,  # noqa: E402
                                  PrivateRedis)

PROCESSES = ("api", "conductor", "scheduler", "compute", "beat", "novncproxy", "spicehtml5proxy")
PROJECTS = 3  # plus one with a small quota
MAX_SERVERS = 6  # per project: above it the workload deletes more than it boots
LIBVIRT_MAX_SERVERS = 2  # TCG guests: 128 MB and a share of 2 cores each
LIBVIRT_HOST = "soak-kvm"
TIMEOUTS = {"STRATUS_INSTANCE_BUILD_TIMEOUT": 900, "STRATUS_TASK_STATE_TIMEOUT": 900}
MICROVERSION = {"OpenStack-API-Version": "compute 2.96"}


class History:
    def __init__(self, path: Path):
        self.path = path
        self.fh = open(path, "a")
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()

    def write(self, **entry) -> None:
        entry["t"] = round(time.time(), 3)
        with self.lock:
            self.fh.write(json.dumps(entry) + "\n")
            self.fh.flush()
            if "op" in entry:
                self.counts[entry["op"]] += 1

    def chaos(self, what: str) -> None:
        """A fault injected (the checker counts these)."""
        print(f"[{time.strftime('%H:%M:%S')}] chaos: {what}", flush=True)
        self.write(chaos=what)

    def note(self, what: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)
        self.write(note=what)


class Services:
    """The backend's servers, and what of them can be restarted."""

    def __init__(self, backend: str):
        self.backend = backend
        self.shared = BACKENDS["mariadb-rabbitmq"].own()  # the machine's MariaDB: a database of the soak's own
        self.db = self.broker = None
        if backend == "postgresql-redis":
            self.db, self.broker = PrivatePostgres(), PrivateRedis(durable=True)
        elif backend == "mariadb-rabbitmq":
            self.broker = PrivateRabbitMQ()
        elif backend != "sqlite-fs":
            raise SystemExit(f"unknown backend {backend}")

    def start(self) -> PrivateBackend:
        db_url = self.db.init() if self.db else ""
        if self.backend == "mariadb-rabbitmq":
            db_url = self.shared.database_url()
        if self.broker:
            self.broker.start()
        kind = {"sqlite-fs": ("sqlite", "filesystem"), "postgresql-redis": ("postgresql", "redis"),
                "mariadb-rabbitmq": ("mariadb", "rabbitmq")}[self.backend]
        return PrivateBackend(f"soak-{self.backend}", *kind, db_url=db_url,
                              mq_url=self.broker.url if self.broker else "")

    def close(self) -> None:
        for server in (self.broker, self.db):
            if server:
                server.close()
        if self.backend == "mariadb-rabbitmq":
            self.shared.cleanup()


class Workload:
    def __init__(self, stack: Stack, history: History, rate: float, seed: int, driver: str = "fake"):
        self.stack, self.history, self.rate = stack, history, rate
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.admin = Client(stack)
        self.max_servers = MAX_SERVERS
        if driver == "libvirt":  # the test guest (kernel + ramdisk + qcow2) and two flavors it fits
            from tests.libvirt_support import upload_test_image
            self.image, small = upload_test_image(self.admin, guest_image_dir())
            self._make_public(self.image)
            big = requests.post(f"{self.admin.url}/flavors", headers=self.admin.headers, timeout=30, json={"flavor": {
                "name": "guest.small", "ram": 192, "vcpus": 1, "disk": 2}}).json()["flavor"]["id"]
            self.flavors = {"guest.tiny": small, "guest.small": big}
            self.max_servers = LIBVIRT_MAX_SERVERS
        else:
            self.image = self.admin.upload("soak", b"s" * 4096, "raw", "bare", visibility="public")
            self.flavors = {"m1.nano": "42", "m1.micro": "84"}
        self.projects = [self._project(f"soak-p{i}") for i in range(PROJECTS)]
        self.projects.append(self._project("soak-quota", instances=2))
        self.groups: dict[str, list[str]] = {p["id"]: [] for p in self.projects}

    def _make_public(self, image_id: str) -> None:
        """The projects boot the admin's test guest: make its disk image (and kernel, ramdisk) public."""
        url = f"{self.stack.url}/image/v2/images"
        props = requests.get(f"{url}/{image_id}", headers=self.admin.headers, timeout=30).json()
        for iid in (image_id, props.get("kernel_id"), props.get("ramdisk_id")):
            if iid:
                requests.patch(f"{url}/{iid}", headers={**self.admin.headers, "Content-Type":
                                                         "application/openstack-images-v2.1-json-patch"},
                               data=json.dumps([{"op": "replace", "path": "/visibility", "value": "public"}]),
                               timeout=30).raise_for_status()

    def _project(self, name: str, instances: int = 50) -> dict:
        """A project, its member user, a quota on it, a token."""
        url, h = f"{self.stack.url}/identity/v3", self.admin.headers
        pid = requests.post(f"{url}/projects", headers=h, timeout=30, json={"project": {
            "name": name, "domain_id": "default"}}).json()["project"]["id"]
        password = uuid.uuid4().hex
        uid = requests.post(f"{url}/users", headers=h, timeout=30, json={"user": {
            "name": f"{name}-user", "domain_id": "default", "password": password,
            "default_project_id": pid}}).json()["user"]["id"]
        role = requests.get(f"{url}/roles", headers=h, params={"name": "member"}, timeout=30).json()["roles"][0]["id"]
        requests.put(f"{url}/projects/{pid}/users/{uid}/roles/{role}", headers=h, timeout=30).raise_for_status()
        requests.put(f"{self.admin.url}/os-quota-sets/{pid}", headers=h, timeout=30, json={"quota_set": {
            "instances": instances, "cores": 4 * instances, "ram": 512 * instances}}).raise_for_status()
        token = self.stack.token(f"{name}-user", password, name)
        return {"id": pid, "name": name, "headers": {"X-Auth-Token": token, **MICROVERSION}}

    # one request, recorded
    def call(self, op: str, project: dict, method: str, path: str, server_id: str | None = None,
             body: dict | None = None) -> requests.Response | None:
        try:
            r = requests.request(method, f"{self.admin.url}{path}", headers=project["headers"], json=body, timeout=60)
        except requests.RequestException as exc:
            self.history.write(op=op, project=project["name"], server_id=server_id, status=0,
                               body=type(exc).__name__)
            return None
        if op in ("boot", "group-boot", "quota-boot") and r.status_code == 202:
            server_id = r.json()["server"]["id"]
        self.history.write(op=op, project=project["name"], server_id=server_id, status=r.status_code,
                           body="" if r.ok else r.text[:300])
        return r

    def servers(self, project: dict) -> list[dict]:
        try:
            r = requests.get(f"{self.admin.url}/servers/detail", headers=project["headers"], timeout=60)
            return r.json()["servers"] if r.status_code == 200 else []
        except (requests.RequestException, ValueError):
            return []

    def boot_body(self, name: str, group: str | None = None) -> dict:
        body = {"server": {"name": name, "imageRef": self.image, "flavorRef": next(iter(self.flavors.values())),
                           "networks": "none"}}
        if group:
            body["os:scheduler_hints"] = {"group": group}
        return body

    def one(self) -> None:
        rng = self.rng
        project = rng.choices(self.projects, [3] * PROJECTS + [1])[0]
        if project["name"] == "soak-quota":  # boots past its quota of 2: 403s, and deletes to make room
            servers = self.servers(project)
            idle = [s for s in servers if not s["OS-EXT-STS:task_state"] and s["status"] != "BUILD"]
            if len(servers) >= 3 and idle and rng.random() < 0.5:
                s = rng.choice(idle)
                self.call("delete", project, "DELETE", f"/servers/{s['id']}", s["id"])
            else:
                self.call("quota-boot", project, "POST", "/servers", body=self.boot_body(f"q-{uuid.uuid4().hex[:6]}"))
            return
        servers = self.servers(project)
        by_status = collections.defaultdict(list)
        for s in servers:
            if not s["OS-EXT-STS:task_state"]:
                by_status[s["status"]].append(s)
        full = len(servers) >= self.max_servers
        choices = [("boot", 1 if full else 6), ("group-boot", 0 if full and self.max_servers < MAX_SERVERS else 1),
                   ("delete", 4 if full else 1)]
        choices += [(op, 2) for op, st in (("stop", "ACTIVE"), ("reboot", "ACTIVE"), ("start", "SHUTOFF"),
                                           ("resize", "ACTIVE"), ("snapshot", "ACTIVE"), ("shelve", "ACTIVE"),
                                           ("unshelve", "SHELVED_OFFLOADED"), ("confirm", "VERIFY_RESIZE"),
                                           ("revert", "VERIFY_RESIZE")) if by_status[st]]
        op = rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
        name = f"{project['name']}-{uuid.uuid4().hex[:6]}"
        if op == "boot":
            self.call(op, project, "POST", "/servers", body=self.boot_body(name))
            return
        if op == "group-boot":
            groups = self.groups[project["id"]]
            if not groups or rng.random() < 0.2:
                r = self.call("group-create", project, "POST", "/os-server-groups", body={"server_group": {
                    "name": name, "policy": rng.choice(["anti-affinity", "soft-affinity"])}})
                if r is not None and r.status_code == 200:
                    groups.append(r.json()["server_group"]["id"])
                return
            self.call(op, project, "POST", "/servers", body=self.boot_body(name, rng.choice(groups)))
            return
        if op == "delete":
            pool = [s for st in ("ACTIVE", "SHUTOFF", "ERROR", "SHELVED_OFFLOADED") for s in by_status[st]]
            if pool:
                s = rng.choice(pool)
                self.call(op, project, "DELETE", f"/servers/{s['id']}", s["id"])
            return
        status = {"stop": "ACTIVE", "reboot": "ACTIVE", "start": "SHUTOFF", "resize": "ACTIVE",
                  "snapshot": "ACTIVE", "shelve": "ACTIVE", "unshelve": "SHELVED_OFFLOADED",
                  "confirm": "VERIFY_RESIZE", "revert": "VERIFY_RESIZE"}[op]
        s = rng.choice(by_status[status])
        flavor = next(f for name, f in self.flavors.items() if name != s["flavor"].get("original_name"))
        body = {"stop": {"os-stop": None}, "start": {"os-start": None},
                "reboot": {"reboot": {"type": rng.choice(["SOFT", "HARD"])}},
                "resize": {"resize": {"flavorRef": flavor}}, "snapshot": {"createImage": {"name": f"snap-{name}"}},
                "shelve": {"shelve": None}, "unshelve": {"unshelve": None},
                "confirm": {"confirmResize": None}, "revert": {"revertResize": None}}[op]
        self.call(op, project, "POST", f"/servers/{s['id']}/action", s["id"], body)

    def run(self, threads: int = 3) -> list[threading.Thread]:
        """``threads`` clients, together about ``rate`` operations a second."""
        def client() -> None:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    self.one()
                except Exception as exc:  # the workload must outlive whatever the cloud answers
                    self.history.write(op="client-error", status=0, body=repr(exc)[:300])
                self.stop.wait(max(0.0, threads / self.rate - (time.monotonic() - started)))
        out = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for t in out:
            t.start()
        return out


def chaos(stack: Stack, services: Services, history: History, duration: float, rng: random.Random,
          stop: threading.Event) -> None:
    """SIGKILL a random process every 20-60 s and start it again; the broker restarted at 30 % and 65 % of the
    run, the database at 45 %."""
    t0 = time.monotonic()
    plan = []
    if services.broker:
        plan += [(0.30, "broker"), (0.65, "broker")]
    if services.db:
        plan.append((0.45, "database"))
    plan.sort()
    next_kill = t0 + rng.uniform(20, 60)
    commands = procfile_commands()
    while not stop.is_set() and time.monotonic() - t0 < duration:
        now = time.monotonic()
        if plan and now - t0 >= plan[0][0] * duration:
            _, what = plan.pop(0)
            server = services.broker if what == "broker" else services.db
            history.chaos(f"restart {what}")
            server.stop()
            time.sleep(5)
            server.start()
            history.note(f"{what} up again")
        elif now >= next_kill:
            name = rng.choice(PROCESSES)
            proc = stack.procs.get(name)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            history.chaos(f"kill {name}")
            time.sleep(rng.uniform(0.5, 3))
            stack.start_process(name, commands[name])
            next_kill = time.monotonic() + rng.uniform(20, 60)
        stop.wait(0.5)
    if not plan:
        return
    for _, what in plan:  # a short run still restarts what it promised, before quiet
        server = services.broker if what == "broker" else services.db
        history.chaos(f"restart {what}")
        server.stop()
        time.sleep(5)
        server.start()


def wait_quiet(wl: Workload, timeout: float) -> bool:
    """Until no server of any project is in BUILD, has a task or waits for a resize's confirmation (confirmed
    here, recorded) and no image is saving; True if quiet came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = 0
        for project in wl.projects:
            for s in wl.servers(project):
                if s["status"] == "VERIFY_RESIZE" and not s["OS-EXT-STS:task_state"]:
                    wl.call("confirm", project, "POST", f"/servers/{s['id']}/action", s["id"], {"confirmResize": None})
                    busy += 1
                elif s["status"] == "BUILD" or s["OS-EXT-STS:task_state"]:
                    busy += 1
        saving = wl.stack.scalar_sql("SELECT count(*) FROM images WHERE status IN ('queued', 'saving') "
                                     "AND name LIKE 'snap-%'")
        if not busy and not saving:
            return True
        time.sleep(2)
    return False


def guest_image_dir() -> Path:
    """libvirtd up and the test guest built (tools/libvirt-up, tools/build-test-image); its directory."""
    import subprocess
    for tool in ("libvirt-up", "build-test-image"):
        run = subprocess.run([str(REPO / "tools" / tool)], capture_output=True, text=True, timeout=900)
        if run.returncode:
            raise RuntimeError(f"tools/{tool} failed:\n{run.stdout}\n{run.stderr}")
    return Path(os.environ.get("STRATUS_TEST_IMAGE_DIR", REPO / ".cache" / "test-image"))


def driver_env(driver: str, out: Path) -> tuple[dict[str, str], dict]:
    """The stack's settings and Stack arguments for the compute driver."""
    if driver == "fake":
        return {"STRATUS_FAKE_VCPUS": "64"}, {}
    from tests.libvirt_support import URI
    os.chmod(out, 0o755)  # QEMU runs as libvirt-qemu: it must reach the instances path
    instances = out / "instances"
    instances.mkdir(mode=0o755, exist_ok=True)
    return {"STRATUS_COMPUTE_DRIVER": "libvirt", "STRATUS_LIBVIRT_URI": URI, "STRATUS_INSTANCES_PATH": str(instances),
            "STRATUS_ALLOW_RESIZE_TO_SAME_HOST": "1", "STRATUS_SHUTDOWN_TIMEOUT": "10",
            "STRATUS_LIBVIRT_SOFT_REBOOT_TIMEOUT": "10",
            "STRATUS_CPU_ALLOCATION_RATIO": "8"}, {"compute_hosts": LIBVIRT_HOST}  # 16 vCPUs on 2 cores


def soak(duration: float, backend: str, rate: float, seed: int, out: Path, quiet_timeout: float,
         driver: str = "fake") -> int:
    out.mkdir(parents=True, exist_ok=True)
    history = History(out / "history.jsonl")
    services = Services(backend)
    rng = random.Random(seed)
    stack = None
    domains_before: set[str] = set()
    try:
        proxies, _, _ = console_proxy_env()
        env, stack_args = driver_env(driver, out)
        if driver == "libvirt":
            from tests.libvirt_support import domains
            guest_image_dir()
            domains_before = domains()
        stack = Stack(out / "state", services.start(), processes=PROCESSES, extra_env={
            **proxies, **{k: str(v) for k, v in TIMEOUTS.items()}, **env,
            "STRATUS_BROKER_VISIBILITY_TIMEOUT": "30", "STRATUS_STALLED_BUILD_RESUME_AFTER": "60"}, **stack_args)
        stack.start()
        print(f"soak: {backend}, {driver} driver, {duration:.0f} s at {rate} op/s, seed {seed}, state and history in "
              f"{out}", flush=True)
        wl = Workload(stack, history, rate, seed, driver)
        stop = threading.Event()
        clients = wl.run()
        chaos(stack, services, history, duration, rng, stop)
        wl.stop.set()
        for t in clients:
            t.join(timeout=90)
        stack.wait_ready(timeout=120)  # every process answers again (a kill at the very end restarts too)
        t0 = time.monotonic()
        quiet = wait_quiet(wl, quiet_timeout)
        print(f"soak: {'quiet' if quiet else 'NOT quiet'} {time.monotonic() - t0:.0f} s after the workload stopped; "
              f"{sum(history.counts.values())} requests", flush=True)
        guests = invariants.libvirt_guests(env["STRATUS_LIBVIRT_URI"], Path(env["STRATUS_INSTANCES_PATH"]),
                                           LIBVIRT_HOST) if driver == "libvirt" else None
        report = invariants.check(stack.env.get("STRATUS_DATABASE_URL") or
                                  f"sqlite:///{stack.state_dir / 'stratus.sqlite'}",
                                  stack.compute_state_dir / "fake-guests" if guests is None else None,
                                  invariants.read_history(history.path),
                                  build_timeout=TIMEOUTS["STRATUS_INSTANCE_BUILD_TIMEOUT"],
                                  task_timeout=TIMEOUTS["STRATUS_TASK_STATE_TIMEOUT"], guests=guests)
        print(report.render(), flush=True)
        (out / "checker.txt").write_text(report.render() + "\n")
        return 1 if report.total else 0
    except Exception as exc:
        import traceback
        traceback.print_exc()
        print(f"soak failed: {exc!r}", file=sys.stderr)
        return 2
    finally:
        if stack is not None:
            stack.stop()
        if driver == "libvirt":  # this stack's domains only: libvirtd is shared
            from tests.libvirt_support import destroy_own_domains
            destroy_own_domains(out / "instances", domains_before)
        services.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/soak.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=180, help="seconds of workload and chaos (default 180)")
    p.add_argument("--backend", default="sqlite-fs", choices=["sqlite-fs", "postgresql-redis", "mariadb-rabbitmq"])
    p.add_argument("--rate", type=float, default=3.0, help="API operations a second, all clients (default 3)")
    p.add_argument("--driver", default="fake", choices=["fake", "libvirt"],
                   help="compute driver (libvirt: real TCG guests on this machine's libvirtd)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="state, logs, history.jsonl, checker.txt (default: a "
                                                          "new directory under /tmp)")
    p.add_argument("--quiet-timeout", type=float, default=300, help="seconds to wait for quiet at the end")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"stratus-soak-{args.backend}-"))
    return soak(args.duration, args.backend, args.rate, seed, out, args.quiet_timeout, args.driver)


if __name__ == "__main__":
    sys.exit(main())
