"""Run a whole Stratus cloud as real local processes, for the functional tests and the benchmarks: the Procfile's
own commands, a fresh database and broker namespace per stack, migrations, bootstrap, and helpers to drive the
openstack CLI."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import requests

from harness import osc_forkserver

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ADMIN_PASSWORD = "stratus-test-admin"
# The compute hosts' own Image API credential (user "compute", role "service" in project "service").
SERVICE_PASSWORD = "stratus-test-compute-service"


# `flask --app app db upgrade` then `flask --app app stratus bootstrap` (README), the same click commands in one
# process: each flask process spends about 1.5 s importing the app, and the suite starts about 40 stacks.
SCHEMA_AND_BOOTSTRAP = """
from app import create_app
runner = create_app().test_cli_runner()
for args in (["db", "upgrade"], ["stratus", "bootstrap"]):
    result = runner.invoke(args=args)
    if result.exit_code:
        raise SystemExit(f"flask {' '.join(args)} failed ({result.exit_code}): {result.output}{result.exception!r}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(predicate: Callable[[], Any], timeout: float, every: float = 0.1) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` seconds (asked every ``every`` seconds, and once more
    at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def wait_port(port: int, timeout: float = 30, address: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((address, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def console_proxy_env() -> tuple[dict[str, str], int, int]:
    """Settings for a stack's noVNC, SPICE and serial proxies on free ports: (env, novnc_port, spice_port); the
    serial proxy's port is ``env["STRATUS_SERIALPROXY_PORT"]``."""
    novnc, spice, serial = free_port(), free_port(), free_port()
    env = {"STRATUS_NOVNCPROXY_PORT": str(novnc), "STRATUS_SPICEHTML5PROXY_PORT": str(spice),
           "STRATUS_SERIALPROXY_PORT": str(serial),
           "STRATUS_NOVNCPROXY_BASE_URL": f"http://127.0.0.1:{novnc}/vnc_auto.html",
           "STRATUS_HTML5PROXY_BASE_URL": f"http://127.0.0.1:{spice}/spice_auto.html",
           "STRATUS_SERIAL_BASE_URL": f"ws://127.0.0.1:{serial}/"}
    return env, novnc, spice


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``proc`` and wait up to ``timeout`` seconds for it to exit, then SIGKILL it."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def procfile_commands() -> dict[str, str]:
    out = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, cmd = line.partition(":")
            out[name.strip()] = cmd.strip()
    return out


# --- backends: each yields URLs for a fresh, isolated database / broker namespace --------------------------------

def pg_admin(sql: str, params: tuple = (), connect_timeout: int = 10) -> tuple | None:
    """Run one statement on this machine's PostgreSQL (database ``test``) in autocommit; its first row, if any."""
    import psycopg
    with psycopg.connect(host="127.0.0.1", user="root", dbname="test", autocommit=True,
                         connect_timeout=connect_timeout) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchone() if cur.description else None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _claim_redis_db() -> tuple[int, str]:
    """A Redis database of this stack's own. Parallel test runs share one Redis server; a stack on another run's
    database consumes its tasks (against its own SQL database). Claimed with SET NX in db 0, released at cleanup;
    the expiry frees claims of killed runs. A database some client is still connected to is passed over even when
    unclaimed: a killed run's worker processes can outlive its claim and would take this stack's tasks. Database 9
    is left to older checkouts that hard-code it."""
    import redis
    r = redis.Redis(host="127.0.0.1", port=6379, db=0)
    in_use = {int(client["db"]) for client in r.client_list()}
    free = [n for n in range(1, 16) if n != 9 and n not in in_use]
    for db in random.sample(free, len(free)):
        key = f"stratus-test-redis-db:{db}"
        if r.set(key, f"{socket.gethostname()}:{os.getpid()}", nx=True, ex=4 * 3600):
            return db, key
    raise RuntimeError("every Redis test database is claimed or has clients (keys stratus-test-redis-db:* in db 0, "
                       "CLIENT LIST)")


@dataclass
class Backend:
    name: str
    database: str  # sqlite | postgresql | mariadb
    broker: str  # filesystem | redis | rabbitmq
    cleanups: list = field(default_factory=list)

    def own(self) -> "Backend":
        """A copy whose databases, vhosts and Redis databases, and their cleanups, are its user's alone: BACKENDS'
        instances are shared, and one user's cleanup() must not drop what another (the session's stack) still
        uses (a fuzz stack's teardown dropped the session stack's MariaDB database)."""
        return replace(self, cleanups=[])

    def missing(self) -> str | None:
        need = {"postgresql": 5432, "mariadb": 3306}.get(self.database)
        if need and not _port_open(need):
            return f"{self.database} is not running on 127.0.0.1:{need}"
        need = {"redis": 6379, "rabbitmq": 5672}.get(self.broker)
        if need and not _port_open(need):
            return f"{self.broker} is not running on 127.0.0.1:{need}"
        return None

    def database_url(self) -> str:
        name = f"stratus_{uuid.uuid4().hex[:10]}"
        if self.database == "postgresql":
            pg_admin(f"CREATE DATABASE {name}")
            self.cleanups.append(lambda: pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            return f"postgresql+psycopg://root@127.0.0.1:5432/{name}"
        if self.database == "mariadb":
            import pymysql
            conn = pymysql.connect(host="127.0.0.1", user="root", password="", database="test", autocommit=True)
            conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            conn.close()

            def drop() -> None:
                c = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
                c.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
                c.close()
            self.cleanups.append(drop)
            return f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
        return ""  # embedded SQLite under the state dir

    def broker_url(self) -> str:
        if self.broker == "redis":
            import redis
            db, claim = _claim_redis_db()
            redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()

            def release() -> None:
                redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
                redis.Redis(host="127.0.0.1", port=6379, db=0).delete(claim)
            self.cleanups.append(release)
            return f"redis://127.0.0.1:6379/{db}"
        if self.broker == "rabbitmq":
            vhost = f"stratus_{uuid.uuid4().hex[:10]}"
            subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
            subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                           capture_output=True)
            self.cleanups.append(lambda: subprocess.run(["rabbitmqctl", "delete_vhost", vhost],
                                                        capture_output=True))
            return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        return ""

    def cleanup(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # cleanup must not hide the test result
                print(f"cleanup of {self.name} failed: {exc}", file=sys.stderr)
        self.cleanups.clear()


BACKENDS = {
    "sqlite-filesystem": Backend("sqlite-filesystem", "sqlite", "filesystem"),
    "postgresql-redis": Backend("postgresql-redis", "postgresql", "redis"),
    "mariadb-rabbitmq": Backend("mariadb-rabbitmq", "mariadb", "rabbitmq"),
}


# What a compute worker's settings name as its database: no such host (it must never connect).
NO_DATABASE_URL = "postgresql+psycopg://nobody@compute-hosts-have-no-database.invalid:1/none"


# --- the stack -----------------------------------------------------------------------------------------------------

class Stack:
    def __init__(self, state_dir: Path, backend: Backend, compute_hosts: str = "fake-1,fake-2",
                 extra_env: dict[str, str] | None = None, processes: tuple[str, ...] = ("api", "conductor",
                                                                                        "scheduler", "compute"),
                 address: str = "127.0.0.1"):
        """``address``: where the API listens and what the public URL names (another machine's view of it)."""
        self.state_dir = state_dir
        self.backend = backend = backend.own()
        self.port = free_port()
        self.url = f"http://{address}:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.process_names = processes
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "STRATUS_STATE_DIR": str(state_dir),
            "STRATUS_DATABASE_URL": backend.database_url(),
            "STRATUS_BROKER_URL": backend.broker_url(),
            "STRATUS_PUBLIC_URL": self.url,
            "STRATUS_API_BIND": f"{address}:{self.port}",
            "STRATUS_COMPUTE_HOSTS": compute_hosts,
            "STRATUS_REPORT_INTERVAL": "2",
            "STRATUS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "STRATUS_SERVICE_PASSWORD": SERVICE_PASSWORD,
            # bcrypt's lowest cost, as Keystone's own tests: every CLI command signs in (0.25 s at the default 12)
            "STRATUS_PASSWORD_HASH_ROUNDS": "4",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.env = {k: v for k, v in self.env.items() if v != "" or not k.startswith("STRATUS_")}

    # lifecycle
    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=REPO, env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def start(self) -> "Stack":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # The schema and bootstrap take 5-20 s alone, and more than 120 s on a 2-core machine at load 20.
        self.run(str(VENV_BIN / "python"), "-c", SCHEMA_AND_BOOTSTRAP, timeout=600)
        commands = procfile_commands()
        for name in self.process_names:
            self.start_process(name, commands[name])
        self.wait_ready()
        return self

    def start_process(self, name: str, command: str, env: dict[str, str] | None = None) -> None:
        """Start ``command`` as process ``name`` with the stack's environment (and ``env`` over it)."""
        log = open(self.state_dir / f"{name}.log", "ab")
        compute = self.compute_env() if name.startswith("compute") else {}
        env = {**self.env, **compute, **(env or {})}
        # Compute hosts have no database (issue 25): the compute worker gets a URL nothing answers at, so any use
        # of the DB there fails the test instead of reaching the controller's database.
        if compute:
            env["STRATUS_DATABASE_URL"] = NO_DATABASE_URL
        self.procs[name] = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def compute_state_dir(self) -> Path:
        """The compute hosts' own state dir (fake guests, host keys, image cache), apart from the controller's."""
        return self.state_dir / "compute-node"

    def compute_env(self) -> dict[str, str]:
        """What a compute worker's settings differ in (issue 25): no database, its own state dir (so it cannot
        read the controller's image store by path: images come from the Image API at STRATUS_IMAGE_API_URL with
        the service credential); the filesystem broker's and results' directories stay the controller's."""
        env = {"STRATUS_DATABASE_URL": NO_DATABASE_URL, "STRATUS_STATE_DIR": str(self.compute_state_dir),
               "STRATUS_IMAGE_API_URL": f"{self.url}/image"}
        if self.backend.broker == "filesystem":
            env |= {"STRATUS_FS_BROKER_DIR": str(self.state_dir / "broker"),
                    "STRATUS_RESULT_BACKEND": f"file://{self.state_dir / 'results'}"}
        return env

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            # SIGTERM goes to the main process only: sent to the whole group it also kills Celery's pool
            # children, which the main process then restarts in its warm shutdown and waits for (20 s, SIGKILL).
            (os.kill if sig == signal.SIGTERM else os.killpg)(proc.pid, sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the main process left behind
            except (ProcessLookupError, PermissionError):
                pass

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        hosts = [h for h in self.env["STRATUS_COMPUTE_HOSTS"].split(",") if h]
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
            try:
                token = self.admin_token()
                r = requests.get(f"{self.url}/v2.1/os-availability-zone", headers={"X-Auth-Token": token}, timeout=5)
                if r.ok and (not hosts or "compute" not in self.procs or self.registered_hosts() >= len(hosts)):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("stack did not become ready:\n" + "\n".join(
            f"--- {n}\n{self.log(n)[-2000:]}" for n in self.procs))

    def registered_hosts(self) -> int:
        return self.scalar_sql("SELECT count(*) FROM compute_nodes")

    def scalar_sql(self, sql: str, **params: object) -> object:
        """The first column of the first row of ``sql`` run on the stack's database (what the API cannot show)."""
        from sqlalchemy import create_engine, text
        url = self.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{self.state_dir / 'stratus.sqlite'}"
        engine = create_engine(url)
        try:
            with engine.connect() as c:
                return c.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def log(self, name: str) -> str:
        path = self.state_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():  # signal every process first, so they shut down in parallel
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for name in list(self.procs):
            self.stop_process(name)
        self.backend.cleanup()

    # clients
    def admin_token(self) -> str:
        return self.token("admin", ADMIN_PASSWORD, "admin")

    def token(self, user: str, password: str, project: str) -> str:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        r = requests.post(f"{self.url}/identity/v3/auth/tokens", json=body, timeout=10)
        r.raise_for_status()
        return r.headers["X-Subject-Token"]

    def os_env(self, user: str = "admin", password: str = ADMIN_PASSWORD, project: str = "admin") -> dict:
        env = {k: v for k, v in self.env.items() if not k.startswith("OS_")}
        env.update(OS_AUTH_URL=f"{self.url}/identity/v3", OS_IDENTITY_API_VERSION="3", OS_USERNAME=user,
                   OS_PASSWORD=password, OS_PROJECT_NAME=project, OS_USER_DOMAIN_NAME="Default",
                   OS_PROJECT_DOMAIN_NAME="Default", OS_REGION_NAME="RegionOne")
        return env

    def openstack(self, *args: str, user: str = "admin", password: str = ADMIN_PASSWORD, project: str = "admin",
                  check: bool = True, timeout: float = 180, executable: bool = False) -> subprocess.CompletedProcess:
        """The unmodified openstack CLI: ``executable`` (or STRATUS_TEST_OSC=exec) runs the ``openstack`` console
        script as a new process; otherwise a child of the fork server runs the same code with its imports done
        (harness/osc_forkserver.py: about 0.2 s a command instead of 1)."""
        env = self.os_env(user, password, project)
        if executable or os.environ.get("STRATUS_TEST_OSC") == "exec":
            proc = subprocess.run([str(VENV_BIN / "openstack"), *args], env=env, capture_output=True, text=True,
                                  timeout=timeout)
        else:
            proc = osc_forkserver.run(str(VENV_BIN / "python"), list(args), env, timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"openstack {shlex.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n"
                                 f"{proc.stdout}")
        return proc

    def openstack_json(self, *args: str, **kw) -> object:
        return json.loads(self.openstack(*args, "-f", "json", **kw).stdout)

    def wait_server(self, ref: str, *statuses: str, timeout: float = 120) -> dict | None:
        """Wait (REST, every 0.2 s) until server ``ref`` (id or exact name, any project) has one of ``statuses``;
        ``"DELETED"``: until it is gone (returns None). Scenarios use this after a CLI command instead of the CLI's
        own --wait, which polls every 5 s; test_cli_boot keeps --wait itself covered on every backend."""
        headers = {"X-Auth-Token": self.admin_token(), "OpenStack-API-Version": "compute 2.96"}
        deadline = time.monotonic() + timeout
        while True:
            if uuid_like(ref):
                r = requests.get(f"{self.url}/v2.1/servers/{ref}", headers=headers, timeout=30)
                server = r.json()["server"] if r.status_code == 200 else None
            else:
                r = requests.get(f"{self.url}/v2.1/servers/detail", headers=headers, timeout=30,
                                 params={"name": f"^{re.escape(ref)}$", "all_tenants": "1"})
                server = next(iter(r.json()["servers"]), None)
            if server is None and "DELETED" in statuses:
                return None
            if server is not None and server["status"] in statuses:
                return server
            deleting = "DELETED" in statuses and server is not None and \
                server.get("OS-EXT-STS:task_state") == "deleting"  # an ERROR server on its way out
            if server is not None and server["status"] == "ERROR" and not deleting:
                raise AssertionError(f"server {ref} went to ERROR: {server.get('fault')}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server {ref} not {statuses} after {timeout} s: {server}")
            time.sleep(0.2)

    def wipe(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)


def uuid_like(ref: str) -> bool:
    try:
        uuid.UUID(ref)
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def metadata_stack(state_dir: Path, cidr: str, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A one-host fake cloud with its metadata service on a free port (``stack.md_port``), guests in ``cidr``
    (tests reach it from a guest's address on 127.x), answered once the service listens; wiped afterwards."""
    md_port = free_port()
    st = Stack(state_dir, BACKENDS["sqlite-filesystem"], compute_hosts="fake-1",
               processes=("api", "conductor", "scheduler", "compute", "metadata"),
               extra_env={"STRATUS_NETWORK_CIDR": cidr, "STRATUS_METADATA_BIND": f"127.0.0.1:{md_port}",
                          **(extra_env or {})})
    st.md_port = md_port
    try:
        st.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", md_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, st.log("metadata")[-3000:]
                time.sleep(0.2)
        yield st
    finally:
        st.stop()
        st.wipe()
