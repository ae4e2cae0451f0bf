"""One scheduling decision at 1,000 / 10,000 / 50,000 hosts, split into its parts.

A scratch database (SQLite file; PostgreSQL too when it runs here) gets ``services`` + ``compute_nodes`` rows
inserted directly (every host up, enabled, with a random fill). Then, repeated ``reps`` times, the decision is
timed as the scheduler task makes it:

- refresh: tasks.host_cache.HostStateCache.states on a warm cache (reads only the rows changed since the last
  decision, i.e. the previous claim's host);
- filter+weigh: tasks.scheduler.decide (a random sample of at most 1,000 hosts; all hosts if none fits) and the
  cache's consume of the chosen host;
- claim: core.writes.resources.claim on the chosen host (conditional UPDATE + allocation INSERT) and COMMIT.

For comparison (the path before the cache): load = every host state from the DB (one Core query) and
filter+weigh over all hosts. Medians in ms; "total" is the median of the per-decision sums.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import tempfile
import time
import types
import uuid
from pathlib import Path

from bench.common import environment, loadavg, log


def _engine(kind: str, tmp: Path):
    from core.db import make_engine
    if kind == "sqlite":  # the conductor's engine: WAL, synchronous=NORMAL, BEGIN IMMEDIATE
        return make_engine(f"sqlite:///{tmp / 'sched.sqlite'}", for_writes=True), None
    from harness.stack import pg_admin
    name = f"stratus_bench_{uuid.uuid4().hex[:8]}"
    pg_admin(f"CREATE DATABASE {name}")
    return (make_engine(f"postgresql+psycopg://root@127.0.0.1:5432/{name}"),
            lambda: pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _populate(engine, hosts: int, analyze: bool = True) -> None:
    from sqlalchemy import insert, update

    from core.models import Aggregate, AggregateHost, AggregateMetadata, Base, ComputeNode, Service
    alloc = Base.metadata.tables["allocations"]
    # load_host_states also reads aggregate metadata (zones, filter metadata); empty aggregates here.
    aggregates = [Aggregate.__table__, AggregateHost.__table__, AggregateMetadata.__table__]
    Base.metadata.drop_all(engine, tables=[alloc, ComputeNode.__table__, Service.__table__, *aggregates])
    Base.metadata.create_all(engine, tables=[Service.__table__, ComputeNode.__table__,
                                             Base.metadata.tables["allocations"], *aggregates])
    now = dt.datetime.utcnow()
    reported = now - dt.timedelta(minutes=5)  # last inventory report / service change: steady state
    rnd = random.Random(42)
    with engine.begin() as c:
        c.execute(insert(Service), [{"id": i + 1, "uuid": str(uuid.uuid4()), "host": f"h{i}",
                                     "binary": "nova-compute", "topic": "compute", "disabled": False,
                                     "forced_down": False, "last_seen_at": now + dt.timedelta(hours=6),  # up for the whole run "created_at": now,
                                     "updated_at": reported} for i in range(hosts)])
        rows = []
        for i in range(hosts):
            used = rnd.randint(0, 60)
            rows.append({"id": i + 1, "uuid": str(uuid.uuid4()), "service_id": i + 1, "host": f"h{i}",
                         "hypervisor_hostname": f"h{i}", "hypervisor_type": "fake", "hypervisor_version": 1,
                         "host_ip": "127.0.0.1", "availability_zone": "nova", "vcpus": 16, "memory_mb": 32768,
                         "local_gb": 512, "vcpus_used": used // 4, "memory_mb_used": used * 512,
                         "local_gb_used": used * 8, "running_vms": used, "cpu_allocation_ratio": 4.0,
                         "ram_allocation_ratio": 1.0, "disk_allocation_ratio": 1.0, "updated_at": reported})
        c.execute(insert(ComputeNode), rows)
    if not analyze:  # bench.many_hosts on CI's PostgreSQL (autovacuum off): no statistics, and the dead row
        with engine.connect() as c:  # versions of ten rounds of the workers' heartbeats in services
            for _ in range(10):
                c.execute(update(Service).values(last_seen_at=Service.last_seen_at + dt.timedelta(seconds=1)))
                c.commit()
        return
    with engine.connect() as c:  # planner statistics, as autovacuum (PostgreSQL) would have them by now
        c.exec_driver_sql("ANALYZE")
        c.commit()


def measure(engine, hosts: int, reps: int, analyze: bool = True) -> dict:
    """One decision as the scheduler task makes it (tasks.scheduler.decide on a warm HostStateCache), then the
    conductor's claim. Each part is timed; the uncached full load and the unsampled filter+weigh are timed as
    well, for comparison with the figures before the cache."""
    from sqlalchemy.orm import Session

    from core.writes import resources
    from scheduler.host_state import RequestSpec
    from scheduler.manager import select_destinations
    from tasks.host_cache import HostStateCache, load_all
    from tasks.scheduler import decide

    _populate(engine, hosts, analyze)
    cache = HostStateCache(full_reload_s=3600)  # the full reload is timed separately ("load_ms")
    parts: dict[str, list[float]] = {k: [] for k in ("refresh", "pure", "claim", "total", "full", "pure_all",
                                                     "cpu")}
    for i in range(reps + 1):
        spec = RequestSpec(instance_uuid=str(uuid.uuid4()), vcpus=1, memory_mb=128, root_gb=1)
        c0, t0 = time.process_time(), time.perf_counter()
        with Session(engine) as s:
            states = cache.states(s)
        t1 = time.perf_counter()
        sel = decide(states, spec, max_attempts=3)
        cache.consume(sel.hosts[0], spec)
        t2 = time.perf_counter()
        with Session(engine) as s:
            inst = types.SimpleNamespace(uuid=spec.instance_uuid, vcpus=1, memory_mb=128, root_gb=1)
            ok = resources.claim(s, inst, sel.hosts[0])
            s.commit()
        t3, c3 = time.perf_counter(), time.process_time()
        assert ok, "claim failed"
        with Session(engine) as s:
            everything = load_all(s)
        t4 = time.perf_counter()
        select_destinations(everything, spec, max_attempts=3)
        t5 = time.perf_counter()
        if i == 0:
            continue  # warm-up (imports, connection, statement cache, the cache's first full load)
        for key, value in (("refresh", t1 - t0), ("pure", t2 - t1), ("claim", t3 - t2), ("total", t3 - t0),
                           ("full", t4 - t3), ("pure_all", t5 - t4), ("cpu", c3 - c0)):
            parts[key].append(value)
    med = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
    total = parts["total"]
    return {"hosts": hosts, "reps": reps, "refresh_ms": med(parts["refresh"]), "filter_weigh_ms": med(parts["pure"]),
            "claim_ms": med(parts["claim"]), "total_ms": med(total),
            # This process's CPU for the decision (all of it on SQLite; without the server's work on PostgreSQL):
            # less sensitive than wall time to other load on the machine.
            "total_cpu_ms": med(parts["cpu"]),
            "total_p95_ms": round(sorted(total)[max(0, int(len(total) * 0.95) - 1)] * 1000, 2),
            "load_ms": med(parts["full"]), "filter_weigh_all_hosts_ms": med(parts["pure_all"]),
            "uncached_total_ms": round(med(parts["full"]) + med(parts["pure_all"]) + med(parts["claim"]), 2),
            "passed_hosts_example": sel.explanation}


def run(host_counts=(1000, 10000, 50000), databases=("sqlite", "postgresql"), analyze: bool = True):
    """Yields one record per database."""
    for kind in databases:
        if kind == "postgresql":
            from harness.stack import BACKENDS
            if BACKENDS["postgresql-redis"].missing():
                yield {"bench": "scheduler", "database": kind, "skipped": "postgresql not running"}
                continue
        with tempfile.TemporaryDirectory() as tmp:
            engine, drop = _engine(kind, Path(tmp))
            try:
                rows = []
                load_before = loadavg()
                for hosts in host_counts:
                    reps = 20 if hosts <= 1000 else (10 if hosts <= 10000 else 3)
                    log(f"scheduler: {kind} {hosts} hosts")
                    rows.append(measure(engine, hosts, reps, analyze))
                    log(f"  {rows[-1]}")
                target = next((r for r in rows if r["hosts"] == 10000), None)
                rec = {"bench": "scheduler", "database": kind, "env": environment(kind, "none"), "analyzed": analyze,
                       "load_before": load_before, "load_after": loadavg(), "rows": rows, "target_10k_ms": 10.0,
                       "meets_target_10k": (target["total_ms"] <= 10.0) if target else None}
            finally:
                engine.dispose()
                if drop:
                    drop()
        yield rec


def table(record: dict) -> str:
    keys = ("hosts", "refresh_ms", "filter_weigh_ms", "claim_ms", "total_ms", "total_cpu_ms", "load_ms",
            "filter_weigh_all_hosts_ms", "uncached_total_ms")
    lines = [" ".join(f"{k:>14}" for k in keys)]
    for r in record.get("rows", []):
        lines.append(" ".join(f"{r.get(k, ''):>14}" for k in keys))
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("STRATUS_STATE_DIR", tempfile.mkdtemp(prefix="stratus-bench-sched-"))
    import sys
    # --no-analyze: no planner statistics, as in bench.many_hosts on CI's PostgreSQL (autovacuum off)
    for rec in run(analyze="--no-analyze" not in sys.argv[1:]):
        print(rec)
        print(table(rec))
