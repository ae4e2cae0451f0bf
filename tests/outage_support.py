"""Private Redis, RabbitMQ, PostgreSQL and MariaDB servers that a test may stop, kill and restart without touching
the shared services other test runs use, a Backend that points a Stack at them, and a small REST client for boots."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from harness.stack import VENV_BIN, Backend, Stack, free_port, terminate, wait_port
from tests.tls_support import TLSFiles

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _port_closed(port: int, timeout: float = 30) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still open")


class PrivateRedis:
    """``redis-server`` on a free port. ``durable`` turns on the append-only file with an fsync per write, so a
    restart keeps every message the server acknowledged (without it a restart empties the queues)."""

    def __init__(self, durable: bool = True, tls: TLSFiles | None = None, address: str = "127.0.0.1"):
        self.port = free_port()
        self.address = address
        # Reached from other hosts: a password, as Redis's protected mode demands (and any real deployment).
        self.password = "" if address == "127.0.0.1" else secrets.token_hex(12)
        self.dir = Path(tempfile.mkdtemp(prefix="stratus-redis-"))
        self.durable = durable
        self.tls = tls  # TLS only (no plain port), clients must show a certificate of the same CA
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        # TLS: the name the server's certificate carries, so the client's host name check has something to check
        if self.tls:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://{f':{self.password}@' if self.password else ''}{self.address}:{self.port}/0"

    @staticmethod
    def available() -> str | None:
        return None if shutil.which("redis-server") else "redis-server is not installed"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", self.address, "--dir", str(self.dir),
                "--save", "", "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args[1:3] = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.server_cert),
                         "--tls-key-file", str(self.tls.server_key), "--tls-ca-cert-file", str(self.tls.ca),
                         "--tls-auth-clients", "yes"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port, address=self.address)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the server flushes its append-only file and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        _port_closed(self.port)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (Debian's rabbitmq-server, run as root) on free ports, stopped and started
    with ``rabbitmqctl -n <node>``. Everything else is private too: HOME (hence the Erlang cookie, so this
    rabbitmqctl cannot even authenticate to the machine's node), config (the machine's rabbitmq.conf and
    rabbitmq-env.conf name port 5672 and node rabbit@localhost), data, logs, no plugins. The shared epmd is
    used. Its data directory survives ``stop``, so durable queues and persistent messages outlive a restart."""

    SBIN = Path("/usr/lib/rabbitmq/bin")

    def __init__(self, tls: TLSFiles | None = None):
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"stratus-{self.port}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="stratus-rabbitmq-"))
        conf = f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        self.tls_port = free_port() if tls else None
        if tls:  # a TLS listener beside the plain one; clients must show a certificate of the same CA
            conf += (f"listeners.ssl.local = 127.0.0.1:{self.tls_port}\nssl_options.cacertfile = {tls.ca}\n"
                     f"ssl_options.certfile = {tls.server_cert}\nssl_options.keyfile = {tls.server_key}\n"
                     "ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n")
        (self.dir / "rabbitmq.conf").write_text(conf)
        for empty in ("rabbitmq-env.conf", "enabled_plugins"):
            (self.dir / empty).write_text("")
        self.pid_file = self.dir / "rabbitmq.pid"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def tls_url(self) -> str:
        return f"amqps://guest:guest@localhost:{self.tls_port}//"

    @classmethod
    def available(cls) -> str | None:
        missing = [b for b in ("rabbitmq-server", "rabbitmqctl") if not (cls.SBIN / b).exists()]
        if missing:
            return f"{', '.join(missing)} not installed (apt-get install -y rabbitmq-server)"
        return None

    @property
    def env(self) -> dict[str, str]:
        d = self.dir
        return {**os.environ, "HOME": str(d), "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(self.pid_file), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """rabbitmqctl, always with this node's name (never the machine's node)."""
        return subprocess.run([str(self.SBIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen([str(self.SBIN / "rabbitmq-server")], env=self.env, cwd=self.dir,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        waited = self.ctl("wait", "--timeout", "120", str(self.pid_file), timeout=150)
        if waited.returncode != 0:
            raise RuntimeError(f"RabbitMQ node {self.node} did not start: {waited.stdout}{waited.stderr}\n"
                               f"{(self.dir / 'server.log').read_text(errors='replace')[-2000:]}")
        wait_port(self.port)

    def stop(self) -> None:
        """A clean shutdown: the node closes its clients' connections, syncs its queues and exits."""
        stopped = self.ctl("stop", str(self.pid_file))
        if stopped.returncode != 0:
            raise RuntimeError(f"rabbitmqctl stop failed: {stopped.stdout}{stopped.stderr}")
        if self.proc:
            self.proc.wait(timeout=60)
        _port_closed(self.port)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.ctl("stop", str(self.pid_file), timeout=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever the node left behind (its own process group)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb into a temp dir, run as the postgres user) on a free port."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stratus-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.options = ""  # more server settings (-c name=value ...)

    def require_tls(self, tls: TLSFiles) -> None:
        """From the next start on, only TLS connections with a client certificate of ``tls``'s CA whose common name
        is the role (pg_hba ``hostssl ... cert``): a plain or certificate-less connection is refused."""
        for name in ("server_cert", "server_key", "ca"):
            copy = self.dir / Path(getattr(tls, name)).name
            shutil.copy(getattr(tls, name), copy)
            shutil.chown(copy, "postgres", "postgres")
            copy.chmod(0o600)
        (self.data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 cert\n")
        self.options = (f"-c ssl=on -c ssl_cert_file={self.dir / Path(tls.server_cert).name} "
                        f"-c ssl_key_file={self.dir / Path(tls.server_key).name} "
                        f"-c ssl_ca_file={self.dir / Path(tls.ca).name}")

    @staticmethod
    def available() -> str | None:
        if not (PG_BIN / "initdb").exists():
            return f"{PG_BIN}/initdb is not installed"
        return None

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def init(self) -> str:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "root",
                          "--no-sync")
        self.start()
        subprocess.run([str(PG_BIN.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "root", "stratus"], check=True, capture_output=True)
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/stratus"

    def start(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.dir / "pg.log"),
                          "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                          f"{self.options}",
                          "start")
        wait_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        _port_closed(self.port)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateMariaDB:
    """A throw-away MariaDB server (mariadb-install-db into a temp dir, run as the mysql user) on a free port that
    accepts only TLS connections whose client certificate was signed by ``tls``'s CA: the user ``root``@127.0.0.1
    is created ``REQUIRE X509`` and the server runs with ``require_secure_transport``."""

    def __init__(self, tls: TLSFiles):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stratus-mariadb-"))
        self.tls = tls
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> str | None:
        missing = [b for b in ("mariadb-install-db", "mariadbd", "mariadb") if shutil.which(b) is None
                   and not Path(f"/usr/sbin/{b}").exists()]
        return f"{', '.join(missing)} not installed" if missing else None

    def start(self) -> None:
        own = {name: self.dir / Path(getattr(self.tls, name)).name for name in ("ca", "server_cert", "server_key")}
        for name, copy in own.items():
            shutil.copy(getattr(self.tls, name), copy)
        subprocess.run(["chown", "-R", "mysql:mysql", str(self.dir)], check=True)
        subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={self.dir / 'data'}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        self.proc = subprocess.Popen(
            [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", "--user=mysql",
             f"--datadir={self.dir / 'data'}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.dir / 'sock'}", f"--pid-file={self.dir / 'pid'}", f"--ssl-ca={own['ca']}",
             f"--ssl-cert={own['server_cert']}", f"--ssl-key={own['server_key']}", "--skip-log-bin",
             "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "error.log", "wb"))
        wait_port(self.port)
        # Over the local socket (no TLS there): a TLS-only network user, the database, TLS required of all
        sql = ("CREATE OR REPLACE USER 'root'@'127.0.0.1' REQUIRE X509; GRANT ALL ON *.* TO 'root'@'127.0.0.1'; "
               "CREATE DATABASE stratus CHARACTER SET utf8mb4; SET GLOBAL require_secure_transport = ON;")
        subprocess.run(["mariadb", f"--socket={self.dir / 'sock'}", "-uroot", "-e", sql], check=True,
                       capture_output=True, timeout=60)

    def url(self, with_client_cert: bool = True) -> str:
        base = (f"mysql+pymysql://root@127.0.0.1:{self.port}/stratus?charset=utf8mb4&ssl_ca={self.tls.ca}"
                f"&ssl_check_hostname=true")
        return base + (f"&ssl_cert={self.tls.client_cert}&ssl_key={self.tls.client_key}" if with_client_cert else "")

    def close(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclasses.dataclass
class PrivateBackend(Backend):
    """A Backend whose database / broker URLs were made by the test (empty database URL: SQLite)."""
    db_url: str = ""
    mq_url: str = ""

    def missing(self) -> str | None:
        return None

    def database_url(self) -> str:
        return self.db_url

    def broker_url(self) -> str:
        return self.mq_url


# --- driving and inspecting a stack ----------------------------------------------------------------------------

class Client:
    """The REST calls the reliability tests make (plain requests, so every status code is visible)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.url = f"{stack.url}/v2.1"
        self.headers = {"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.96"}

    def image(self) -> str:
        return self.upload("rel", b"r" * 64, "raw", "bare")

    def upload(self, name: str, data: bytes | Path, disk_format: str, container_format: str, **props: str) -> str:
        """An image with ``props`` as its properties and ``data`` (bytes, or a file to stream) as its data."""
        r = requests.post(f"{self.stack.url}/image/v2/images", headers=self.headers, timeout=30, json={
            "name": name, "disk_format": disk_format, "container_format": container_format, **props})
        r.raise_for_status()
        image_id = r.json()["id"]
        with (open(data, "rb") if isinstance(data, Path) else contextlib.nullcontext(data)) as body:
            requests.put(f"{self.stack.url}/image/v2/images/{image_id}/file", data=body, timeout=120,
                         headers={**self.headers, "Content-Type": "application/octet-stream"}).raise_for_status()
        return image_id

    def boot(self, image_id: str, name: str, timeout: float = 60, flavor: str = "42") -> requests.Response:
        return requests.post(f"{self.url}/servers", headers=self.headers, timeout=timeout, json={"server": {
            "name": name, "imageRef": image_id, "flavorRef": flavor, "networks": "none"}})

    def servers(self) -> list[dict]:
        r = requests.get(f"{self.url}/servers/detail", headers=self.headers, timeout=60)
        r.raise_for_status()
        return r.json()["servers"]

    def delete(self, server_id: str) -> int:
        return requests.delete(f"{self.url}/servers/{server_id}", headers=self.headers, timeout=60).status_code

    def wait_settled(self, ids: set[str], timeout: float) -> dict[str, dict]:
        """Wait until none of ``ids`` is in BUILD or has a task_state; return them by id."""
        deadline = time.monotonic() + timeout
        while True:
            mine = {s["id"]: s for s in self.servers() if s["id"] in ids}
            busy = [s for s in mine.values() if s["status"] == "BUILD" or s["OS-EXT-STS:task_state"]]
            if not busy or time.monotonic() > deadline:
                return mine
            time.sleep(1)

    def wait_gone(self, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while (left := self.servers()) and time.monotonic() < deadline:
            time.sleep(1)
        return left


def query(stack: Stack, sql: str) -> list[tuple]:
    url = stack.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{stack.state_dir / 'stratus.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        engine.dispose()


def audit(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """``flask --app app stratus audit``: exit 0 nothing to heal, 3 found, 4 found and deleted."""
    return stack.run(str(VENV_BIN / "flask"), "--app", "app", "stratus", "audit", *args, check=False)
