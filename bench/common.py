"""Shared helpers for the benchmarks: environment record, percentiles, process CPU and counters."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOOK_DIR = Path(__file__).resolve().parent / "hook"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:
        return None


def _git_rev() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except Exception:
        return None


def _sql_version(connect, query: str) -> str:
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(query)
        return str(cur.fetchone()[0])
    finally:
        conn.close()


def _postgresql_version() -> str:
    from harness.stack import pg_admin
    return str(pg_admin("SHOW server_version", connect_timeout=2)[0])


def _mariadb_version() -> str:
    import pymysql
    return _sql_version(lambda: pymysql.connect(host="127.0.0.1", user="root", password="", connect_timeout=2),
                        "SELECT VERSION()")


def _redis_version() -> str:
    import redis
    return redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).info()["redis_version"]


def _rabbitmq_version() -> str:
    proc = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=20, check=True)
    return proc.stdout.strip()


def server_versions() -> dict:
    """Versions of the local PostgreSQL / MariaDB / Redis / RabbitMQ, where they answer."""
    out: dict = {}
    for name, probe in (("postgresql", _postgresql_version), ("mariadb", _mariadb_version),
                        ("redis", _redis_version), ("rabbitmq", _rabbitmq_version)):
        try:
            out[name] = probe()
        except Exception:  # not running here: the figure is simply absent
            pass
    return out


_SERVERS: dict | None = None


def environment(database: str, broker: str) -> dict:
    global _SERVERS
    if _SERVERS is None:
        _SERVERS = server_versions() if os.environ.get("STRATUS_BENCH_QUICK") != "1" else {}
    versions = {"python": platform.python_version(), "sqlalchemy": _version("sqlalchemy"),
                "celery": _version("celery"), "kombu": _version("kombu"), "flask": _version("flask"),
                "gunicorn": _version("gunicorn"), "sqlite": __import__("sqlite3").sqlite_version, **_SERVERS}
    return {"database": database, "broker": broker, "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(), "kernel": platform.release(), "git": _git_rev(), "versions": versions}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100), in the unit of ``values``; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0}
    return {"n": len(seconds), "p50_ms": _ms(pct(seconds, 50)), "p95_ms": _ms(pct(seconds, 95)),
            "p99_ms": _ms(pct(seconds, 99)), "max_ms": _ms(max(seconds)), "mean_ms": _ms(statistics.fmean(seconds))}


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def utc_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def emit(record: dict, out_file: Path | None) -> None:
    """One JSON line to stdout (and appended to the results file)."""
    record = {"ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **record}
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with out_file.open("a") as f:
            f.write(line + "\n")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- process CPU (by session: Stack starts each Procfile process in its own session) -------------------------------

def _process_cpu() -> Iterator[tuple[str, list[str], float]]:
    """(name the kernel shows, /proc/<pid>/stat fields after the name, CPU seconds used) of every live process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        yield raw[raw.index("(") + 1:raw.rindex(")")], fields, (int(fields[11]) + int(fields[12])) / CLK_TCK


def session_cpu(sids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user+system) used so far by the live processes of each session id, by role name."""
    out = {name: 0.0 for name in sids}
    by_sid = {sid: name for name, sid in sids.items()}
    for _comm, fields, cpu in _process_cpu():
        name = by_sid.get(int(fields[3]))
        if name is not None:
            out[name] += cpu
    return out


# The database and broker servers' processes, by the name the kernel shows (comm), as one bench figure each.
SERVICE_COMMS = {"postgres": "postgresql", "mariadbd": "mariadb", "mysqld": "mariadb",
                 "redis-server": "redis", "beam.smp": "rabbitmq"}


def service_cpu() -> dict[str, float]:
    """CPU seconds (user+system) used so far by the database and broker server processes, by service: the live
    ones' own, and what their exited children used (PostgreSQL's backend of a closed connection, in cutime)."""
    out = {name: 0.0 for name in set(SERVICE_COMMS.values())}
    for comm, fields, cpu in _process_cpu():
        name = SERVICE_COMMS.get(comm)
        if name is not None:
            out[name] += cpu + (int(fields[13]) + int(fields[14])) / CLK_TCK
    return out


def proc_stat_cpu() -> list[int]:
    """The machine's CPU time counters (/proc/stat "cpu": user nice system idle iowait irq softirq steal ...)."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def busy_seconds(counters: list[int]) -> float:
    user, nice, system, _idle, _iowait, irq, softirq, *_ = counters
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def role_of(argv: list[str]) -> str:
    text = " ".join(argv)
    if "gunicorn" in text or "create_app" in text:
        return "api"
    if "compute_worker" in text:
        return "compute"
    if "-Q conductor" in text or "conductor@" in text:
        return "conductor"
    if "-Q scheduler" in text or "scheduler@" in text:
        return "scheduler"
    if "flask" in text:
        return "setup"
    return "other"


def read_tx_counters(txdir: Path) -> dict[str, dict[str, int]]:
    """Sum of the bench hook's per-process counters, by role."""
    out: dict[str, dict[str, int]] = {}
    for path in txdir.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        role = role_of(data.get("argv", []))
        acc = out.setdefault(role, {"begin": 0, "commit": 0, "rollback": 0, "statements": 0})
        for k in acc:
            acc[k] += int(data.get(k, 0))
    return out


def diff_counters(after: dict, before: dict) -> dict:
    out = {}
    for role, vals in after.items():
        prev = before.get(role, {})
        out[role] = {k: v - prev.get(k, 0) for k, v in vals.items()}
    return out
