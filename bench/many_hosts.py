"""The "10,000 hosts" proof (issue 25): ``python -m bench.many_hosts [--workers 10] [--hosts-per-worker 1000]``
(or ``python -m bench.run --only hosts``).

A cloud on PostgreSQL + Redis from the Procfile (harness/stack.py): api, conductor, scheduler and beat, plus
``workers`` compute worker processes (the Procfile's ``compute`` command) serving ``hosts_per_worker`` fake hosts
each (STRATUS_COMPUTE_HOSTS; each host's inventory from the fake_* settings). Figures:

- registration: seconds from starting the workers until every host has its compute_nodes row, and the count
  GET /os-hypervisors reports then;
- broker connections: TCP connections from each worker process (and its children) to the Redis port, read from
  /proc/<pid>/fd socket inodes and /proc/<pid>/net/tcp{,6} (target <= 3);
- idle CPU over a quiet window (default 60 s, after a settle period): every Stratus process, and PostgreSQL and
  Redis as a whole (every client of theirs on the machine counts), in cores (target <= 0.2);
- GET /v2.1/os-hypervisors/detail paged at microversion 2.53 (limit + marker): pages, rows, ms per page;
- boots/s: bench/boot.py's boot/delete loop and observer (no lone boots) on this stack (target >= 50/s);
- scheduler decision: the scheduler's own task time ("Task stratus.scheduler.schedule[...] succeeded in Xs" in
  its log) during the boot phase (target <= 10 ms).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import requests

from bench import boot
from bench.common import REPO, emit, environment, loadavg, log, service_cpu, session_cpu, summary_ms, utc_stamp

BACKEND = "postgresql-redis"
REDIS_PORT = 6379
CONTROLLERS = ("api", "conductor", "scheduler", "beat")
TARGETS = {"broker_connections_per_worker": 3, "idle_cores": 0.2, "scheduler_decision_ms": 10.0,
           "boots_per_s": 50.0}


def worker_hosts(worker: int, per_worker: int) -> str:
    return ",".join(f"h{worker:02d}-{i:04d}" for i in range(per_worker))


def _session_pids(sid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                out.append(int(entry.name))
    return out


def broker_connections(sid: int, port: int = REDIS_PORT) -> int:
    """Established TCP connections to ``port`` held by the processes of session ``sid``."""
    count = 0
    for pid in _session_pids(sid):
        inodes = set()
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                    count += 1
    return count


def _wait_registered(stack, total: int, timeout: float) -> float:
    from sqlalchemy import create_engine, text
    engine = create_engine(stack.env["STRATUS_DATABASE_URL"])
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{stack.log(name)[-3000:]}")
            with engine.connect() as c:
                n = c.execute(text("SELECT count(*) FROM compute_nodes")).scalar()
            if n >= total:
                return time.monotonic() - t0
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise RuntimeError(f"only {n} of {total} hosts registered after {timeout} s")


def hypervisor_pages(url: str, token: str, limit: int) -> dict:
    """Walk GET /os-hypervisors/detail by its next links (microversion 2.53: limit + marker)."""
    h = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.53"}
    times, ids = [], []
    nxt: str | None = f"{url}/v2.1/os-hypervisors/detail?limit={limit}"
    while nxt:
        t0 = time.monotonic()
        r = requests.get(nxt, headers=h, timeout=120)
        times.append(time.monotonic() - t0)
        r.raise_for_status()
        body = r.json()
        ids.extend(hv["id"] for hv in body["hypervisors"])
        links = [l["href"] for l in body.get("hypervisors_links", []) if l.get("rel") == "next"]
        nxt = links[0] if links and body["hypervisors"] else None
    return {"limit": limit, "pages": len(times), "rows": len(ids), "distinct": len(set(ids)),
            "per_page": summary_ms(times), "total_s": round(sum(times), 2)}


SCHEDULE_DONE = re.compile(r"Task stratus\.scheduler\.schedule\[[^\]]+\] succeeded in ([0-9.e-]+)s")


def scheduler_times(log_text: str) -> list[float]:
    return [float(m.group(1)) for m in SCHEDULE_DONE.finditer(log_text)]


def wait_drained(broker_url: str, queue: str = "conductor", quiet: float = 3, timeout: float = 600) -> float:
    """Seconds until ``queue`` (a Redis list, priority_steps [0]) stays empty for ``quiet`` s: the registrations'
    and start-up reconciliations' backlog is through, so the idle window measures the steady state."""
    import redis
    r, t0, empty_since = redis.Redis.from_url(broker_url), time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        if r.llen(queue):
            empty_since = None
        elif empty_since is None:
            empty_since = time.monotonic()
        elif time.monotonic() - empty_since >= quiet:
            break
        time.sleep(0.5)
    return time.monotonic() - t0


TASK_DONE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+: INFO/\w+\] Task ([\w.]+)\[[^\]]+\] succeeded",
                       re.M)


def tasks_between(log_text: str, start: str, end: str) -> dict[str, int]:
    """Tasks a worker finished in [start, end) (its log's local 'YYYY-mm-dd HH:MM:SS' stamps), by name."""
    out: dict[str, int] = {}
    for stamp, name in TASK_DONE.findall(log_text):
        if start <= stamp < end:
            out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def idle_cpu(sids: dict[str, int], window: float) -> dict:
    before, sb, t0 = session_cpu(sids), service_cpu(), time.monotonic()
    time.sleep(window)
    after, sa, wall = session_cpu(sids), service_cpu(), time.monotonic() - t0
    roles = {k: round((after[k] - before.get(k, 0.0)) / wall, 4) for k in after}
    services = {k: round((sa[k] - sb[k]) / wall, 4) for k in ("postgresql", "redis")}
    stratus = sum(roles.values())
    return {"window_s": round(wall, 1), "cores_by_process": roles, "cores_services": services,
            "stratus_cores": round(stratus, 4), "total_cores": round(stratus + sum(services.values()), 4),
            "note": "services: every PostgreSQL/Redis process on the machine (other users' load counts too)"}


def run(workers: int = 10, per_worker: int = 1000, n: int = 1000, concurrency: int = 16, idle_window: float = 60,
        settle: float = 5, page_limit: int = 1000, keep: bool = False) -> dict:
    from harness.stack import BACKENDS, Stack, procfile_commands

    backend = BACKENDS[BACKEND]
    total = workers * per_worker
    record: dict = {"bench": "many_hosts", "backend": BACKEND, "compute_worker_processes": workers,
                    "hosts_per_worker": per_worker, "hosts": total, "n": n, "client_threads": concurrency,
                    "targets": TARGETS, "env": environment(backend.database, backend.broker),
                    "load_before": loadavg()}
    if missing := backend.missing():
        return {**record, "skipped": missing}
    state = Path(tempfile.mkdtemp(prefix="stratus-bench-hosts-"))
    txdir = state / "txcount"
    txdir.mkdir()
    # The controllers need no host list; each worker gets its own below.
    stack = Stack(state, backend, compute_hosts="controller", extra_env=boot.bench_env(txdir), processes=CONTROLLERS)
    try:
        stack.start()
        cmd = procfile_commands()["compute"]
        t0 = time.monotonic()
        for w in range(workers):
            stack.start_process(f"compute-{w}", cmd, env={"STRATUS_COMPUTE_HOSTS": worker_hosts(w, per_worker)})
        record["registration_s"] = round(_wait_registered(stack, total, timeout=max(120.0, total / 20)), 1)
        log(f"{total} hosts registered in {record['registration_s']} s")
        token = stack.admin_token()
        r = requests.get(f"{stack.url}/v2.1/os-hypervisors", headers={"X-Auth-Token": token}, timeout=120)
        record["os_hypervisors_count"] = len(r.json()["hypervisors"]) if r.ok else f"HTTP {r.status_code}"
        record["broker_connections_per_worker"] = {f"compute-{w}": broker_connections(stack.procs[f"compute-{w}"].pid)
                                                   for w in range(workers)}
        record["broker_connections_by_controller"] = {name: broker_connections(stack.procs[name].pid)
                                                      for name in CONTROLLERS}
        log(f"broker connections per worker: {record['broker_connections_per_worker']}")
        # The registrations' aftermath (the conductor's backlog of report_service and reconcile_host) out of the
        # window; then ``settle`` s more.
        record["conductor_backlog_drained_s"] = round(wait_drained(stack.env["STRATUS_BROKER_URL"]), 1)
        time.sleep(settle)
        sids = {name: p.pid for name, p in stack.procs.items()}
        start = time.strftime("%Y-%m-%d %H:%M:%S")
        record["idle"] = idle_cpu(sids, idle_window)
        end = time.strftime("%Y-%m-%d %H:%M:%S")
        record["idle"]["tasks_in_window"] = {name: tasks_between(stack.log(name), start, end)
                                             for name in ("conductor", "scheduler", "compute-0")}
        log(f"idle: {record['idle']['total_cores']} cores ({record['idle']['cores_by_process']}, "
            f"{record['idle']['cores_services']})")
        record["hypervisors_detail_paged"] = hypervisor_pages(stack.url, token, page_limit)
        log(f"os-hypervisors/detail: {record['hypervisors_detail_paged']}")
        sched_before = len(scheduler_times(stack.log("scheduler")))
        boot.measure(stack, state, txdir, record, n, concurrency, timeout=max(120.0, n * 0.5), sequential=False)
        record["scheduler_decision"] = summary_ms(scheduler_times(stack.log("scheduler"))[sched_before:])
        record["broker_connections_per_worker_after_boots"] = {
            f"compute-{w}": broker_connections(stack.procs[f"compute-{w}"].pid) for w in range(workers)}
        b = record.get("boot", {})
        record["summary"] = {
            "registration_s": record["registration_s"],
            "max_broker_connections_per_worker": max([*record["broker_connections_per_worker"].values(),
                                                      *record["broker_connections_per_worker_after_boots"].values()]),
            "idle_cores": record["idle"]["total_cores"],
            "scheduler_decision_p50_ms": record["scheduler_decision"].get("p50_ms"),
            "hypervisors_page_p50_ms": record["hypervisors_detail_paged"]["per_page"].get("p50_ms"),
            "boots_per_s": b.get("ops_per_s"), "deletes_per_s": record.get("delete", {}).get("ops_per_s")}
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        record["log_tails"] = {name: stack.log(name)[-2000:] for name in stack.procs}
        for name in stack.procs:
            log(f"--- {name} log tail\n{stack.log(name)[-1500:]}")
    finally:
        stack.stop()
        record["load_after"] = loadavg()
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
        else:
            record["state_dir"] = str(state)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.many_hosts", description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--hosts-per-worker", type=int, default=1000)
    ap.add_argument("--n", type=int, default=1000, help="boots (then deletes)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--idle-window", type=float, default=60)
    ap.add_argument("--keep", action="store_true", help="keep the state dir (process logs)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    os.chdir(REPO)
    rec = run(args.workers, args.hosts_per_worker, args.n, args.concurrency, args.idle_window, keep=args.keep)
    emit(rec, args.out or REPO / "bench" / "results" / f"{utc_stamp()}-hosts.jsonl")
    return 1 if "error" in rec else 0


if __name__ == "__main__":
    raise SystemExit(main())
