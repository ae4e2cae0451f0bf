"""GET /allocation_candidates for 1 VCPU + 512 MB at 10,000 compute-node providers (issue 26's target: <= 20 ms
on PostgreSQL), as the view computes it (core.placement.matching_providers: the capacity test in SQL, plain
columns), with Nova's limit of 1,000 and without one. Scratch databases: a SQLite file, and PostgreSQL when it
runs here. ``python -m bench.placement_bench [--hosts N] [--reps R]``; medians in ms, one JSON line each.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path


def _engine(kind: str, tmp: Path):
    from core.db import make_engine
    if kind == "sqlite":
        return make_engine(f"sqlite:///{tmp / 'placement.sqlite'}", for_writes=True), None
    from harness.stack import pg_admin
    name = f"stratus_bench_{uuid.uuid4().hex[:8]}"
    pg_admin(f"CREATE DATABASE {name}")
    return (make_engine(f"postgresql+psycopg://root@127.0.0.1:5432/{name}"),
            lambda: pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _populate(engine, hosts: int) -> None:
    from sqlalchemy import insert

    from core.models import Base, ComputeNode, Service
    Base.metadata.create_all(engine)
    rnd = random.Random(42)
    with engine.begin() as c:
        c.execute(insert(Service), [{"id": i + 1, "uuid": str(uuid.uuid4()), "host": f"h{i}",
                                     "binary": "nova-compute", "topic": "compute"} for i in range(hosts)])
        c.execute(insert(ComputeNode), [{
            "uuid": str(uuid.uuid4()), "service_id": i + 1, "host": f"h{i}", "hypervisor_hostname": f"h{i}",
            "hypervisor_type": "fake", "vcpus": 16, "memory_mb": 32768, "local_gb": 100,
            "vcpus_used": rnd.randrange(0, 70), "memory_mb_used": rnd.randrange(0, 32768),
            "cpu_allocation_ratio": 4.0} for i in range(hosts)])


def run(hosts: int, reps: int, kinds: tuple[str, ...]) -> list[dict]:
    from sqlalchemy.orm import Session

    from core import placement as view
    out = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                engine, drop = _engine(kind, Path(tmp))
            except Exception as exc:  # PostgreSQL not running here
                out.append({"bench": "placement_candidates", "database": kind, "skipped": str(exc)[:200]})
                continue
            try:
                _populate(engine, hosts)
                rec = {"bench": "placement_candidates", "database": kind, "providers": hosts}
                for label, limit in (("limit_1000_ms", 1000), ("no_limit_ms", None)):
                    times = []
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        with Session(engine) as s:
                            found = view.matching_providers(s, {"VCPU": 1, "MEMORY_MB": 512}, limit=limit)
                        times.append((time.perf_counter() - t0) * 1000)
                    rec[label] = round(statistics.median(times), 2)
                    rec[label.replace("_ms", "_candidates")] = len(found)
                out.append(rec)
            finally:
                engine.dispose()
                if drop:
                    drop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    args = ap.parse_args()
    for rec in run(args.hosts, args.reps, tuple(args.db)):
        print(json.dumps(rec))


if __name__ == "__main__":
    main()
