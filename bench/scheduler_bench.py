"""One scheduling decision at 1,000 / 10,000 / 50,000 hosts, split into its parts.

A scratch database (SQLite file; PostgreSQL too when it runs here) gets ``services`` + ``compute_nodes`` rows
inserted directly (every host up, enabled, with a random fill). Then, repeated ``reps`` times, the decision is
timed as the scheduler task does it:

- load: tasks.scheduler.load_host_states (the ORM query joining compute_nodes and services, HostState objects);
- filter+weigh: scheduler.manager.select_destinations (pure, in memory);
- claim: tasks.db_write.claim on the chosen host (conditional UPDATE + allocation INSERT) and COMMIT.

Medians are reported in ms; "total" is the median of the per-decision sums.
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
    from sqlalchemy import create_engine
    if kind == "sqlite":
        return create_engine(f"sqlite:///{tmp / 'sched.sqlite'}"), None
    import psycopg2
    name = f"stratus_bench_{uuid.uuid4().hex[:8]}"
    c = psycopg2.connect(host="127.0.0.1", user="root", dbname="test")
    c.autocommit = True
    c.cursor().execute(f"CREATE DATABASE {name}")
    c.close()

    def drop():
        c = psycopg2.connect(host="127.0.0.1", user="root", dbname="test")
        c.autocommit = True
        c.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.close()
    return create_engine(f"postgresql+psycopg2://root@127.0.0.1:5432/{name}"), drop


def _populate(engine, hosts: int) -> None:
    from sqlalchemy import insert

    from app.models import Aggregate, AggregateHost, AggregateMetadata, Base, ComputeNode, Service
    alloc = Base.metadata.tables["allocations"]
    # load_host_states also reads aggregate metadata (zones, filter metadata); empty aggregates here.
    aggregates = [Aggregate.__table__, AggregateHost.__table__, AggregateMetadata.__table__]
    Base.metadata.drop_all(engine, tables=[alloc, ComputeNode.__table__, Service.__table__, *aggregates])
    Base.metadata.create_all(engine, tables=[Service.__table__, ComputeNode.__table__,
                                             Base.metadata.tables["allocations"], *aggregates])
    now = dt.datetime.utcnow()
    rnd = random.Random(42)
    with engine.begin() as c:
        c.execute(insert(Service), [{"id": i + 1, "uuid": str(uuid.uuid4()), "host": f"h{i}",
                                     "binary": "stratus-compute", "topic": "compute", "disabled": False,
                                     "forced_down": False, "last_seen_at": now + dt.timedelta(hours=6),  # up for the whole run "created_at": now,
                                     "updated_at": now} for i in range(hosts)])
        rows = []
        for i in range(hosts):
            used = rnd.randint(0, 60)
            rows.append({"id": i + 1, "uuid": str(uuid.uuid4()), "service_id": i + 1, "host": f"h{i}",
                         "hypervisor_hostname": f"h{i}", "hypervisor_type": "fake", "hypervisor_version": 1,
                         "host_ip": "127.0.0.1", "availability_zone": "nova", "vcpus": 16, "memory_mb": 32768,
                         "local_gb": 512, "vcpus_used": used // 4, "memory_mb_used": used * 512,
                         "local_gb_used": used * 8, "running_vms": used, "cpu_allocation_ratio": 4.0,
                         "ram_allocation_ratio": 1.0, "disk_allocation_ratio": 1.0, "updated_at": now})
        c.execute(insert(ComputeNode), rows)


def measure(engine, hosts: int, reps: int) -> dict:
    from sqlalchemy.orm import Session

    from scheduler.host_state import RequestSpec
    from scheduler.manager import select_destinations
    from tasks import db_write
    from tasks.scheduler import load_host_states

    _populate(engine, hosts)
    load, pure, claim, total = [], [], [], []
    for i in range(reps + 1):
        spec = RequestSpec(instance_uuid=str(uuid.uuid4()), vcpus=1, memory_mb=128, root_gb=1)
        t0 = time.perf_counter()
        with Session(engine) as s:
            states = load_host_states(s)
        t1 = time.perf_counter()
        sel = select_destinations(states, spec, max_attempts=3)
        t2 = time.perf_counter()
        with Session(engine) as s:
            inst = types.SimpleNamespace(uuid=spec.instance_uuid, vcpus=1, memory_mb=128, root_gb=1)
            ok = db_write.claim(s, inst, sel.hosts[0])
            s.commit()
        t3 = time.perf_counter()
        assert ok, "claim failed"
        if i == 0:
            continue  # warm-up (imports, connection, statement cache)
        load.append(t1 - t0)
        pure.append(t2 - t1)
        claim.append(t3 - t2)
        total.append(t3 - t0)
    # Alternatives the scheduler task could use (recommendations, measured here; not wired in):
    # (a) a Core query of plain columns instead of ORM entities (+ the joined eager load of ComputeNode.service);
    # (b) an in-process host-state cache refreshed incrementally: only rows changed since the last decision.
    core, refresh = [], []
    q, inc = _core_queries()
    for i in range(reps + 1):
        t0 = time.perf_counter()
        with engine.connect() as c:
            _ = [_state_from_row(r) for r in c.execute(q)]
        t1 = time.perf_counter()
        with engine.connect() as c:
            _ = c.execute(inc, {"since": dt.datetime.utcnow()}).all()
        t2 = time.perf_counter()
        if i:
            core.append(t1 - t0)
            refresh.append(t2 - t1)
    med = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
    return {"hosts": hosts, "reps": reps, "load_ms": med(load), "filter_weigh_ms": med(pure),
            "claim_ms": med(claim), "total_ms": med(total),
            "alt_load_core_columns_ms": med(core), "alt_cache_refresh_query_ms": med(refresh), "total_p95_ms": round(sorted(total)[
                max(0, int(len(total) * 0.95) - 1)] * 1000, 2), "passed_hosts_example": sel.explanation}


def _core_queries():
    from sqlalchemy import or_, select

    from app.models import ComputeNode as N, Service as S
    cols = (N.host, N.id, N.availability_zone, S.disabled, S.forced_down, S.last_seen_at, N.vcpus, N.memory_mb,
            N.local_gb, N.vcpus_used, N.memory_mb_used, N.local_gb_used, N.cpu_allocation_ratio,
            N.ram_allocation_ratio, N.disk_allocation_ratio, N.running_vms)
    q = select(*cols).join(S, N.service_id == S.id)
    from sqlalchemy import bindparam
    inc = q.where(or_(N.updated_at >= bindparam("since"), S.updated_at >= bindparam("since")))
    return q, inc


def _state_from_row(r):
    from scheduler.host_state import HostState
    return HostState(host=r[0], node_id=r[1], availability_zone=r[2], enabled=not r[3], up=not r[4] and r[5] is not None,
                     vcpus=r[6], memory_mb=r[7], local_gb=r[8], vcpus_used=r[9], memory_mb_used=r[10],
                     local_gb_used=r[11], cpu_allocation_ratio=r[12], ram_allocation_ratio=r[13],
                     disk_allocation_ratio=r[14], running_vms=r[15])


def run(host_counts=(1000, 10000, 50000), databases=("sqlite", "postgresql")):
    """Yields one record per database."""
    for kind in databases:
        if kind == "postgresql":
            from tests.stack import BACKENDS
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
                    rows.append(measure(engine, hosts, reps))
                    log(f"  {rows[-1]}")
                target = next((r for r in rows if r["hosts"] == 10000), None)
                rec = {"bench": "scheduler", "database": kind, "env": environment(kind, "none"),
                       "load_before": load_before, "load_after": loadavg(), "rows": rows, "target_10k_ms": 10.0,
                       "meets_target_10k": (target["total_ms"] <= 10.0) if target else None}
            finally:
                engine.dispose()
                if drop:
                    drop()
        yield rec


def table(record: dict) -> str:
    lines = [f"{'hosts':>8} {'load ms':>9} {'filter+weigh ms':>16} {'claim ms':>9} {'total ms':>9} "
             f"{'alt: core load ms':>18} {'alt: cache refresh ms':>22}"]
    for r in record.get("rows", []):
        lines.append(f"{r['hosts']:>8} {r['load_ms']:>9} {r['filter_weigh_ms']:>16} {r['claim_ms']:>9} "
                     f"{r['total_ms']:>9} {r['alt_load_core_columns_ms']:>18} {r['alt_cache_refresh_query_ms']:>22}")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("STRATUS_STATE_DIR", tempfile.mkdtemp(prefix="stratus-bench-sched-"))
    for rec in run():
        print(rec)
        print(table(rec))
