"""Install and run upstream Nova 34 + Placement (PyPI) as real processes for the side-by-side benchmark.

Venv: ~/.cache/stratus/nova-venv (STRATUS_NOVA_VENV), made once with the first Python >= 3.10 found and
``pip install nova==NOVA_VERSION openstack-placement==PLACEMENT_VERSION gunicorn psycopg2-binary`` from PyPI.
Processes: placement-api and nova-api under gunicorn (the WSGI apps Nova and Placement ship), nova-conductor,
nova-scheduler and one nova-compute per host (fake.FakeDriver, its own ``host``), on the local PostgreSQL (own
databases) and RabbitMQ (a private vhost). Identity, Image and Networking come from an auxiliary Stratus API.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench import nova_config
from bench.common import log

NOVA_VERSION = "34.0.0"
PLACEMENT_VERSION = "16.0.0"
VENV = Path(os.environ.get("STRATUS_NOVA_VENV", Path.home() / ".cache" / "stratus" / "nova-venv"))
PACKAGES = (f"nova=={NOVA_VERSION}", f"openstack-placement=={PLACEMENT_VERSION}", "gunicorn", "psycopg2-binary")
# The WSGI servers: the same shape as Stratus's API (Procfile: 2 workers x 8 threads).
GUNICORN = {"workers": 2, "worker_class": "gthread", "threads": 8}


def install() -> Path:
    """The cached venv, made on first use. Returns its bin directory."""
    bindir = VENV / "bin"
    marker = VENV / ".stratus-installed"
    if marker.exists() and marker.read_text().strip() == " ".join(PACKAGES):
        return bindir
    py = next((p for p in ("python3.11", "python3.12", "python3.10", "python3") if shutil.which(p)), None)
    if py is None:
        raise RuntimeError("no python3 to make Nova's venv with")
    log(f"installing {' '.join(PACKAGES)} into {VENV} (PyPI; a few minutes)")
    subprocess.run([py, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(bindir / "pip"), "install", "-q", *PACKAGES], check=True)
    marker.write_text(" ".join(PACKAGES))
    return bindir


def _gunicorn_args(settings: dict[str, object]) -> list[str]:
    return [a for k, v in settings.items() for a in (f"--{k.replace('_', '-')}", str(v))]


class PrivatePostgres:
    """Nova's own PostgreSQL server (same binaries as the shared one, own port and directory): Nova's processes
    keep ~100 connections open, the shared server's whole max_connections ("too many clients" for everyone).
    max_connections 1000: room for oslo.db's default pools (5 + 50 per engine) in every Nova and Placement
    process."""

    def __init__(self, port: int):
        # Its own temporary directory: the postgres user cannot enter the benchmark's (mode 0700) state dir.
        self.dir, self.port = Path(tempfile.mkdtemp(prefix="stratus-peer-pg-")), port
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=300)

    def start(self) -> None:
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "root", "--auth=trust",
                          "-E", "UTF8")
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                          "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=1000",
                          "start")

    def sql(self, statement: str) -> None:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "root", "-d", "postgres", "-q",
                        "-c", statement], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "fast", "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def _rabbit_vhost(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)


class NovaCloud:
    """One Nova deployment: databases, vhost, config, processes (each in its own session, for the CPU count)."""

    def __init__(self, d: nova_config.NovaDeployment, hosts: list[str]):
        self.d, self.hosts = d, hosts
        self.pg = PrivatePostgres(d.db_port)
        self.bin = VENV / "bin"
        self.procs: dict[str, subprocess.Popen] = {}
        self.url = f"http://127.0.0.1:{d.api_port}"
        etc = d.state_dir / "etc"
        self.env = {**os.environ, "OS_NOVA_CONFIG_DIR": str(etc), "OS_PLACEMENT_CONFIG_DIR": str(etc / "placement"),
                    "PATH": f"{self.bin}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
        self.env.pop("PYTHONPATH", None)

    # --- setup -----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.pg.start()
        for db in self.d.databases:
            self.pg.sql(f'CREATE DATABASE "{db}"')
        _rabbit_vhost(self.d.rabbit_vhost)
        self.paths = nova_config.write(self.d, VENV / "etc" / "nova" / "api-paste.ini", self.hosts)
        nova_conf = str(self.paths["nova"])
        self._run(str(self.bin / "placement-manage"), "--config-file", str(self.paths["placement"]), "db", "sync")
        manage = [str(self.bin / "nova-manage"), "--config-file", nova_conf]
        self._run(*manage, "api_db", "sync")
        self._run(*manage, "cell_v2", "map_cell0", "--database_connection", self.d.db_url("cell0"))
        self._run(*manage, "cell_v2", "create_cell", "--name", "cell1")
        self._run(*manage, "db", "sync")

    def _run(self, *args: str, timeout: float = 600) -> str:
        t0 = time.monotonic()
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[-3:])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        log(f"{' '.join(a for a in args if '/' not in a)} {time.monotonic() - t0:.0f} s")
        return proc.stdout

    def _start(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        out = open(self.d.state_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=cwd or self.d.state_dir, start_new_session=True)

    def start(self, timeout: float = 300) -> None:
        nova_conf = str(self.paths["nova"])
        self._start("placement", [str(self.bin / "gunicorn"), *_gunicorn_args(GUNICORN), "--bind",
                                  f"127.0.0.1:{self.d.placement_port}", "placement.wsgi.api:application"])
        self._wait_http(f"http://127.0.0.1:{self.d.placement_port}/", timeout)
        # Nova's WSGI app parses sys.argv with oslo.config: gunicorn gets no arguments, its settings come from
        # gunicorn.conf.py in the working directory.
        api_dir = self.d.state_dir / "api"
        api_dir.mkdir(exist_ok=True)
        (api_dir / "gunicorn.conf.py").write_text(nova_config.gunicorn_conf(
            "nova.wsgi.osapi_compute:application", f"127.0.0.1:{self.d.api_port}", GUNICORN))
        self._start("api", [str(self.bin / "gunicorn")], cwd=api_dir)
        self._start("conductor", [str(self.bin / "nova-conductor"), "--config-file", nova_conf])
        self._start("scheduler", [str(self.bin / "nova-scheduler"), "--config-file", nova_conf])
        for host in self.hosts:
            self._start(f"compute-{host}", [str(self.bin / "nova-compute"), "--config-file",
                                            str(self.paths[f"compute:{host}"])])
        self._wait_http(f"{self.url}/", timeout)
        self._discover(timeout)

    def _wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(url, timeout=5).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{url} did not answer in {timeout} s")

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}): {self.log(name)[-2000:]}")

    def _discover(self, timeout: float) -> None:
        """Map every compute host into cell1 once all have registered their compute node."""
        deadline = time.monotonic() + timeout
        manage = [str(self.bin / "nova-manage"), "--config-file", str(self.paths["nova"])]
        while time.monotonic() < deadline:
            self._check_alive()
            self._run(*manage, "cell_v2", "discover_hosts")
            mapped = self._run(*manage, "cell_v2", "list_hosts")
            if all(f" {h} " in mapped for h in self.hosts):
                return
            time.sleep(3)
        raise TimeoutError(f"not every compute host was mapped in {timeout} s")

    def log(self, name: str) -> str:
        path = self.d.state_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def sessions(self) -> dict[str, int]:
        """Session id of every process, by role: the computes together are one role ("compute-*" summed)."""
        return {name: p.pid for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        self.procs.clear()

    def drop(self) -> None:
        self.pg.stop()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.d.rabbit_vhost], capture_output=True, timeout=60)
