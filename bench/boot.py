"""Boot and delete throughput/latency through the real API, scheduler, conductor and compute processes.

A whole cloud is started from the Procfile (harness/stack.py) on one backend, with ``hosts`` fake compute hosts
served by ONE compute worker process. ``n`` servers are created with POST /v2.1/servers from a pool of
``concurrency`` HTTP client threads; one poller thread follows the state changes with
GET /v2.1/servers/detail?changes-since=<t> (no per-server GETs). Then all are deleted the same way.

Figures (per phase):
- throughput: n / (first request sent -> last server seen ACTIVE, resp. DELETED);
- client latency: request sent -> first poll that shows ACTIVE (resp. DELETED); the poll period (POLL_PERIOD,
  250 ms, plus the time of one list call) is included, so these are upper bounds;
- server latency from the DB: instances.created_at (conductor insert) -> launched_at (finish_boot), and for
  delete instance_actions.start_time (delete accepted) -> instances.terminated_at;
- DB transactions and SQL statements per boot, counted inside every stack process by bench/hook (SQLAlchemy
  engine events), by process role; on PostgreSQL also pg_stat_database xact_commit/xact_rollback of the
  stack's own database (which includes the poller's reads and the heartbeats);
- CPU seconds per boot by process role (user+system of each Procfile process and its children).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import (HOOK_DIR, busy_seconds, diff_counters, environment, loadavg, log, proc_stat_cpu,
                          read_tx_counters, service_cpu, session_cpu, summary_ms)

COMPUTE = "/v2.1"


# The poller's pause between two lists (STRATUS_BENCH_POLL_PERIOD). Each list returns every server changed in the
# last ~2 s (the overlap), so at 50 ms a server came back in ~40 lists and the observer cost the API more than a
# fifth of its CPU per boot (bench/README.md, 2026-12-03 afternoon); at 250 ms the latencies it reads are upper
# bounds by that much more.
POLL_PERIOD = float(os.environ.get("STRATUS_BENCH_POLL_PERIOD", "0.25"))


class Poller(threading.Thread):
    """Follows status changes through GET /servers/detail?changes-since=..., recording the first time each
    server is seen in each status."""

    def __init__(self, url: str, token: str, period: float = POLL_PERIOD):
        super().__init__(name="poller", daemon=True)
        self.url, self.period = url, period
        self.http = requests.Session()
        self.http.headers["X-Auth-Token"] = token
        self.seen: dict[str, dict[str, float]] = {}  # uuid -> status -> monotonic time first seen
        self.stop_event = threading.Event()
        self.polls = 0
        self.poll_times: list[float] = []
        self.rows = 0
        self.errors = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        since = dt.datetime.utcnow() - dt.timedelta(seconds=5)
        while not self.stop_event.is_set():
            started_wall = dt.datetime.utcnow()
            t0 = time.monotonic()
            try:
                servers = self._fetch(since)
            except requests.RequestException:
                self.errors += 1
                time.sleep(0.2)
                continue
            now = time.monotonic()
            self.poll_times.append(now - t0)
            self.polls += 1
            self.rows += len(servers)
            with self.lock:
                for srv in servers:
                    self.seen.setdefault(srv["id"], {}).setdefault(srv["status"], now)
            # Overlap windows by 2 s: rows committed during the previous call are not missed.
            since = started_wall - dt.timedelta(seconds=2)
            self.stop_event.wait(self.period)

    def _fetch(self, since: dt.datetime) -> list[dict]:
        out: list[dict] = []
        url = f"{self.url}{COMPUTE}/servers/detail"
        params: dict | None = {"changes-since": since.isoformat(timespec="microseconds") + "Z", "limit": 1000}
        while url:
            r = self.http.get(url, params=params, timeout=60)
            r.raise_for_status()
            body = r.json()
            out.extend(body["servers"])
            nxt = [l["href"] for l in body.get("servers_links", []) if l.get("rel") == "next"]
            url, params = (nxt[0], None) if nxt else (None, None)
        return out

    def first_seen(self, uid: str, status: str) -> float | None:
        with self.lock:
            return self.seen.get(uid, {}).get(status)

    def count(self, uids: list[str], status: str) -> int:
        with self.lock:
            return sum(1 for u in uids if status in self.seen.get(u, {}))


def create_image(url: str, token: str) -> str:
    h = {"X-Auth-Token": token}
    r = requests.post(f"{url}/image/v2/images", json={"name": "bench-image", "disk_format": "raw",
                                                      "container_format": "bare"}, headers=h, timeout=30)
    r.raise_for_status()
    image_id = r.json()["id"]
    r = requests.put(f"{url}/image/v2/images/{image_id}/file", data=b"\0" * 4096,
                     headers={**h, "Content-Type": "application/octet-stream"}, timeout=30)
    r.raise_for_status()
    return image_id


def _pg_xacts(db_url: str) -> dict | None:
    if not db_url.startswith("postgresql"):
        return None
    from harness.stack import pg_admin
    # Each connection reads the statistics afresh (a snapshot lasts for a transaction, and this runs in autocommit).
    commit, rollback = pg_admin("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
                                (db_url.rsplit("/", 1)[1],))
    return {"xact_commit": int(commit), "xact_rollback": int(rollback)}


class Phase:
    """Snapshot of the counters around one phase (boot or delete)."""

    def __init__(self, stack, txdir: Path, sids: dict[str, int]):
        self.stack, self.txdir, self.sids = stack, txdir, sids

    def snap(self) -> dict:
        return {"cpu": session_cpu(self.sids), "services": service_cpu(), "tx": read_tx_counters(self.txdir),
                "pg": _pg_xacts(self.stack.env.get("STRATUS_DATABASE_URL", "")), "load": loadavg(),
                "client_cpu": time.process_time(), "machine": proc_stat_cpu(), "t": time.monotonic()}

    @staticmethod
    def delta(before: dict, after: dict, n: int) -> dict:
        cpu = {k: round(after["cpu"][k] - before["cpu"].get(k, 0.0), 2) for k in after["cpu"]}
        tx = diff_counters(after["tx"], before["tx"])
        out: dict = {
            "cpu_seconds": {**cpu, "total": round(sum(cpu.values()), 2)},
            "cpu_seconds_per_op": round(sum(cpu.values()) / n, 4) if n else None,
            "db_by_role": tx,
            # The database and broker servers' CPU (every client of theirs on the machine counts, not only ours).
            "service_cpu_seconds_per_op": {k: round((after["services"][k] - before["services"][k]) / n, 4)
                                           for k in after["services"] if after["services"][k] > before["services"][k]}
            if n else None,
            # The benchmark's own HTTP clients and poller, and every busy CPU second of the machine (stack,
            # clients, database and broker servers, anything else running): the budget 50 boots/s must fit in.
            "client_cpu_seconds_per_op": round((after["client_cpu"] - before["client_cpu"]) / n, 4) if n else None,
            "machine_busy_cpu_seconds_per_op": round((busy_seconds(after["machine"]) -
                                                      busy_seconds(before["machine"])) / n, 4) if n else None,
            "machine_cpu_steal_share": _steal_share(before["machine"], after["machine"]),
        }
        tot = {k: sum(v[k] for v in tx.values()) for k in ("begin", "commit", "rollback", "statements")}
        out["db_per_op"] = {k: round(v / n, 2) for k, v in tot.items()} if n else None
        # Transactions of the cloud's own work, without the benchmark's poller (the API's reads for it).
        no_api = {k: sum(v[k] for r, v in tx.items() if r != "api") for k in tot}
        out["db_per_op_excluding_api"] = {k: round(v / n, 2) for k, v in no_api.items()} if n else None
        if before["pg"] and after["pg"]:
            out["pg_stat_database_per_op"] = {k: round((after["pg"][k] - before["pg"][k]) / n, 2)
                                              for k in before["pg"]}
        return out


def _steal_share(before: list[int], after: list[int]) -> float | None:
    """Of all CPU time in the phase, the share the hypervisor gave to other guests (steal)."""
    delta = [a - b for a, b in zip(after, before)]
    total = sum(delta[:8])
    return round(delta[7] / total, 3) if total and len(delta) > 7 else None


class Refused(Exception):
    """The API did not accept a request: its status and body are kept for the record."""

    def __init__(self, method: str, path: str, status: int, body: str, request_id: str | None):
        super().__init__(f"{method} {path} {status}: {body[:200]}")
        self.record = {"request": f"{method} {path}", "status": status, "body": body[:1000],
                       "request_id": request_id}


def refusal(r: requests.Response) -> Refused:
    return Refused(r.request.method, r.request.path_url, r.status_code, r.text,
                   r.headers.get("x-openstack-request-id") or r.headers.get("x-compute-request-id"))


def run_phase(name: str, uids_or_n, submit, poller: Poller, target_status: str, concurrency: int,
               timeout: float) -> dict:
    sent: dict[str, float] = {}
    accepted: list[float] = []
    errors: list[str] = []
    refused: list[dict] = []  # every request the API did not accept: status, body, request id
    lock = threading.Lock()

    def one(arg):
        t0 = time.monotonic()
        try:
            uid = submit(arg)
        except Exception as exc:  # recorded, the run continues
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                refused.append({**getattr(exc, "record", {"request": None, "status": None,
                                                          "body": f"{type(exc).__name__}: {exc}"[:1000]}),
                                "after_s": round(time.monotonic() - t0, 3), "arg": str(arg)})
            return
        with lock:
            sent[uid] = t0
            accepted.append(time.monotonic() - t0)

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, uids_or_n))
    submitted = time.monotonic()
    uids = list(sent)
    deadline = submitted + timeout
    while time.monotonic() < deadline:
        if poller.count(uids, target_status) >= len(uids):
            break
        time.sleep(0.1)
    done = [u for u in uids if poller.first_seen(u, target_status) is not None]
    last = max((poller.first_seen(u, target_status) for u in done), default=start)
    latencies = [poller.first_seen(u, target_status) - sent[u] for u in done]
    error_states = [u for u in uids if "ERROR" in poller.seen.get(u, {})]
    wall = last - start
    return {"phase": name, "requested": len(uids_or_n) if hasattr(uids_or_n, "__len__") else None,
            "accepted": len(uids), "completed": len(done), "errors_http": len(errors),
            "error_samples": errors[:3], "refused": refused[:50],
            "refused_by_status": {str(k): sum(1 for r in refused if r["status"] == k)
                                  for k in sorted({r["status"] for r in refused}, key=str)},
            "instances_in_error": len(error_states),
            "wall_s": round(wall, 2), "submit_s": round(submitted - start, 2),
            "ops_per_s": round(len(done) / wall, 2) if wall > 0 else None,
            "api_accept_latency": summary_ms(accepted), "client_latency": summary_ms(latencies),
            "_uids": uids}


def _db_latencies(stack, uids: list[str]) -> tuple[dict, dict]:
    """created_at -> launched_at, and delete accepted -> terminated_at, from the stack's DB."""
    from sqlalchemy import create_engine, text
    url = stack.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{stack.state_dir / 'stratus.sqlite'}"
    eng = create_engine(url)
    boot, delete = [], []
    want = set(uids)
    try:
        with eng.connect() as c:
            for uid, created, launched, terminated in c.execute(text(
                    "SELECT uuid, created_at, launched_at, terminated_at FROM instances")):
                if uid in want and created and launched:
                    boot.append((_dt(launched) - _dt(created)).total_seconds())
            starts = {u: _dt(t) for u, t in c.execute(text(
                "SELECT instance_uuid, start_time FROM instance_actions WHERE action = 'delete'"))}
            for uid, terminated in c.execute(text("SELECT uuid, terminated_at FROM instances "
                                                  "WHERE terminated_at IS NOT NULL")):
                if uid in want and uid in starts:
                    delete.append((_dt(terminated) - starts[uid]).total_seconds())
    finally:
        eng.dispose()
    return summary_ms(boot), summary_ms(delete)


def _dt(v) -> dt.datetime:
    return v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))


def bench_env(txdir: Path) -> dict[str, str]:
    """The stack settings of a boot benchmark: the per-process DB counters (bench/hook) and room for n servers."""
    return {
        "PYTHONPATH": f"{HOOK_DIR}:{os.environ.get('PYTHONPATH', '')}".rstrip(":"),
        "STRATUS_BENCH_TXDIR": str(txdir),
        # Room for n servers: unlimited quota, a /16 for fixed IPs.
        "STRATUS_QUOTA_INSTANCES": "-1", "STRATUS_QUOTA_CORES": "-1", "STRATUS_QUOTA_RAM": "-1",
        "STRATUS_NETWORK_CIDR": "10.64.0.0/16",
        # The shipped default (harness/stack.py uses 2 s, which with 100 hosts is 50 sync tasks/s of noise).
        "STRATUS_REPORT_INTERVAL": "10",
    }


def run(backend_name: str, n: int = 1000, hosts: int = 100, concurrency: int = 16, timeout: float | None = None,
        profile: bool = False, keep: bool = False) -> dict:
    from harness.stack import BACKENDS, Stack

    backend = BACKENDS[backend_name]
    missing = backend.missing()
    record: dict = {"bench": "boot_delete", "backend": backend_name, "n": n, "hosts": hosts,
                    "compute_worker_processes": 1, "client_threads": concurrency,
                    "env": environment(backend.database, backend.broker), "load_before": loadavg()}
    if missing:
        return {**record, "skipped": missing}
    state = Path(tempfile.mkdtemp(prefix=f"stratus-bench-{backend_name}-"))
    txdir = state / "txcount"
    txdir.mkdir()
    extra = bench_env(txdir)
    stack = Stack(state, backend, compute_hosts=",".join(f"fake-{i}" for i in range(hosts)), extra_env=extra)
    timeout = timeout or max(120.0, n * 0.5)
    t_start = time.monotonic()
    try:
        stack.start()
        record["stack_start_s"] = round(time.monotonic() - t_start, 1)
        measure(stack, state, txdir, record, n, concurrency, timeout, profile)
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        record["log_tails"] = {name: stack.log(name)[-3000:] for name in ("conductor", "scheduler", "compute")}
        for name in ("api", "conductor", "scheduler", "compute"):
            log(f"--- {name} log tail\n{stack.log(name)[-1500:]}")
    finally:
        stack.stop()
        record["load_after"] = loadavg()
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
    return record


def measure(stack, state: Path, txdir: Path, record: dict, n: int, concurrency: int, timeout: float,
            profile: bool = False, sequential: bool = True) -> None:
    """On a started ``stack``: a warm-up boot, ``SEQUENTIAL_BOOTS`` lone boots (if ``sequential``), then ``n``
    boots and their deletes with the figures of each phase, into ``record`` (boot, delete, poller)."""
    sids = {name: p.pid for name, p in stack.procs.items()}
    token = stack.admin_token()
    image_id = create_image(stack.url, token)
    local = threading.local()

    def http() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.headers["X-Auth-Token"] = token
        return local.s

    def create(i: int) -> str:
        r = http().post(f"{stack.url}{COMPUTE}/servers", json={"server": {
            "name": f"bench-{i}", "imageRef": image_id, "flavorRef": "42"}}, timeout=120)
        if r.status_code != 202:
            raise refusal(r)
        return r.json()["server"]["id"]

    def delete(uid: str) -> str:
        r = http().delete(f"{stack.url}{COMPUTE}/servers/{uid}", timeout=120)
        if r.status_code != 204:
            raise refusal(r)
        return uid

    # Warm-up: one server through the whole canvas (imports, connections), not counted.
    poller = Poller(stack.url, token)
    poller.start()
    warm = run_phase("warmup", [0], create, poller, "ACTIVE", 1, 60)
    record["single_boot_client_latency_ms"] = warm["client_latency"].get("p50_ms")
    run_phase("warmup-delete", warm["_uids"], delete, poller, "DELETED", 1, 60)
    if sequential:
        record["sequential_boot"] = _sequential_boots(stack, http, create, delete, SEQUENTIAL_BOOTS)
    time.sleep(1.5)

    phase = Phase(stack, txdir, sids)
    duration = min(60, max(5, int(n / 40)))
    profilers = {role: _start_profile(stack, state, role, duration) for role in PROFILED_ROLES
                 if role in stack.procs} if profile \
        else {}
    before = phase.snap()
    boot = run_phase("boot", list(range(n)), create, poller, "ACTIVE", concurrency, timeout)
    time.sleep(1.5)  # counters are flushed every 0.5 s; PostgreSQL stats at transaction end
    after = phase.snap()
    boot.update(Phase.delta(before, after, boot["completed"]), load_during=after["load"])
    for role, profiler in profilers.items():
        if profiler:
            record[f"profile_{role}"] = _finish_profile(profiler)

    before = phase.snap()
    dele = run_phase("delete", boot["_uids"], delete, poller, "DELETED", concurrency, timeout)
    time.sleep(1.5)
    after = phase.snap()
    dele.update(Phase.delta(before, after, dele["completed"]), load_during=after["load"])
    poller.stop_event.set()
    poller.join(10)
    db_boot, db_delete = _db_latencies(stack, boot["_uids"])
    boot["server_latency_created_to_launched"] = db_boot
    dele["server_latency_accepted_to_terminated"] = db_delete
    for ph in (boot, dele):
        ph.pop("_uids")
    if boot["errors_http"] or dele["errors_http"]:
        record["api_tracebacks"] = _tracebacks(stack.log("api"))
        record["conductor_tracebacks"] = _tracebacks(stack.log("conductor"))
        record["log_warnings"] = {role: [line[-400:] for line in stack.log(role).splitlines()
                                         if "WARNING" in line or "ERROR" in line][-20:]
                                  for role in ("api", "conductor")}
    record.update(boot=boot, delete=dele,
                  poller={"polls": poller.polls, "rows": poller.rows, "errors": poller.errors,
                          "poll_latency": summary_ms(poller.poll_times)})


SEQUENTIAL_BOOTS = 10


def _sequential_boots(stack, http, create, delete, k: int) -> dict:
    """Latency of a boot alone: ``k`` boots one after the other, each followed by GET /servers/{id} every 10 ms
    until ACTIVE (not the list poller), then deleted. Also created_at -> launched_at from the DB."""
    latencies, uids = [], []
    for i in range(k):
        t0 = time.monotonic()
        uid = create(f"seq-{i}")
        while time.monotonic() - t0 < 30:
            r = http().get(f"{stack.url}{COMPUTE}/servers/{uid}", timeout=30)
            status = r.json()["server"]["status"] if r.ok else None
            if status in ("ACTIVE", "ERROR"):
                if status == "ACTIVE":
                    latencies.append(time.monotonic() - t0)
                break
            time.sleep(0.01)
        uids.append(uid)
    server_side, _ = _db_latencies(stack, uids)
    for uid in uids:
        delete(uid)
    return {"n": k, "client_latency": summary_ms(latencies), "server_latency_created_to_launched": server_side,
            "poll_interval_ms": 10}


def _tracebacks(log_text: str, limit: int = 3) -> list[str]:
    """The last lines of the first few tracebacks in a process log (the state dir is removed after the run)."""
    out, lines = [], log_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, min(i + 200, len(lines))) if lines[j] and not lines[j][0].isspace()
                        and not lines[j].startswith("Traceback") and not lines[j].startswith("During") and
                        not lines[j].startswith("The above")), i)
            out.append("\n".join(lines[max(i, end - 8):end + 1]))
            if len(out) >= limit:
                break
    return out


# --- optional py-spy sampling of the process roles ----------------------------------------------------------------

PROFILED_ROLES = ("api", "conductor", "scheduler", "compute")


def _pyspy() -> str | None:
    for cand in (shutil.which("py-spy"), "/tmp/pyspy/bin/py-spy"):
        if cand and os.path.exists(cand):
            return cand
    return None


def _start_profile(stack, state: Path, role: str, duration: int):
    import subprocess
    exe = _pyspy()
    if exe is None:
        log("py-spy not found; no profile")
        return None
    out = state / f"{role}.pyspy.txt"
    # --gil: only the thread holding the GIL is sampled, so the profile shows where Python spends CPU, not where
    # threads wait (for the database, a row lock, the broker).
    rate = os.environ.get("STRATUS_BENCH_PYSPY_RATE", "50")  # samples per second
    proc = subprocess.Popen([exe, "record", "--subprocesses", "--nonblocking", "--gil", "-d", str(duration), "-r", rate,
                             "-f", "raw", "-o", str(out), "-p", str(stack.procs[role].pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, out


def _finish_profile(profiler) -> dict:
    proc, out = profiler
    try:
        proc.wait(timeout=120)
    except Exception:
        proc.kill()
    if not out.exists():
        return {"error": (proc.stderr.read() or b"").decode()[-300:]}
    from collections import Counter
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack_s, _, count = line.rpartition(" ")
        try:
            c = int(count)
        except ValueError:
            continue
        frames = stack_s.split(";")
        total += c
        if frames:
            own[_short(frames[-1])] += c
        for fr in set(_short(f) for f in frames):
            inclusive[fr] += c
    project = [[f, round(100 * c / total, 1)] for f, c in inclusive.most_common()
               if any(k in f for k in ("(tasks/", "(app/", "(scheduler/", "(drivers/", "send_task", "apply_async",
                                       "commit (", "flush ("))][:30] if total else []
    return {"samples": total, "top_project_inclusive": project,
            "top_self": [[f, round(100 * c / total, 1)] for f, c in own.most_common(12)] if total else [],
            "top_inclusive": [[f, round(100 * c / total, 1)] for f, c in inclusive.most_common(40)] if total else []}


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path, _, _line = loc.rpartition(":")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"
