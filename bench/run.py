"""Run every Stratus benchmark: ``python -m bench.run [--quick] [--backends ...] [--n N]`` (``make bench``).

Each benchmark prints ONE JSON line (figures + environment + load average) to stdout and appends it to
bench/results/<timestamp>.jsonl (or --out). Progress goes to stderr. Benchmarks:

- boot_delete        (bench/boot.py)             per backend: N boots and N deletes through the real processes
- scheduler          (bench/scheduler_bench.py)  one decision at 1,000 / 10,000 / 50,000 hosts
- api_servers_detail (bench/api_reads.py)        GET /servers/detail with 1,000 / 10,000 servers, limit=1000
- celery_floor       (bench/celery_floor.py)     per backend's broker: the boot's six hops with no-op tasks
- placement_candidates (bench/placement_bench.py) GET /placement/allocation_candidates at 10,000 providers: Nova's
                     query (limit 1000), and without a limit (SQLite, PostgreSQL, MariaDB)
- many_hosts         (bench/many_hosts.py)       only with --only hosts: 10 compute workers x 1,000 fake hosts on
                     PostgreSQL+Redis (--hosts: hosts per worker, --n: boots)
- peer_comparison    published upstream Nova figures (docs/design.md) next to ours; Nova is not run here

--quick (CI, tests/test_bench_smoke.py): SQLite + filesystem broker only, 20 boots on 10 hosts, the scheduler at
1,000 hosts, the API read with 200 servers, allocation candidates at 1,000 providers.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, emit, loadavg, log, utc_stamp

# Upstream Nova 34, fake driver, real processes, 2 cores, PostgreSQL + RabbitMQ, 10 fake hosts (docs/design.md).
NOVA_PUBLISHED = {
    "source": "docs/design.md 'Speed and scale targets' (published/measured upstream Nova figures; Nova not run here)",
    "boots_per_s": [2.0, 2.7], "deletes_per_s": [7.0, 9.0], "cpu_seconds_per_boot_and_delete": 1.0,
    "db_transactions_per_boot": 250, "placement_http_calls_per_boot": 28, "single_boot_to_active_s": [0.4, 0.9],
    "issue_9_quotes": {"boot_mean_s_at_1000_nodes": 13.1, "servers_detail_s_at_100k_servers": 11.0,
                       "scheduler": "chokes at 10k hosts"},
}
TARGETS = {"boots_per_s": 50.0, "boot_p50_ms": 300.0, "db_transactions_per_boot": 25.0, "scheduler_10k_ms": 10.0,
           "servers_detail_1000_ms": 150.0, "placement_candidates_10k_ms": 20.0}
ALL_BACKENDS = ("sqlite-filesystem", "postgresql-redis", "mariadb-rabbitmq")


def _guard(fn, base: dict) -> dict:
    try:
        return fn()
    except Exception as exc:  # one broken benchmark must not hide the others' figures
        import traceback
        log(traceback.format_exc())
        return {**base, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def _guarded_iter(gen, bench: str):
    while True:
        try:
            rec = next(gen)
        except StopIteration:
            return
        except Exception as exc:
            import traceback
            log(traceback.format_exc())
            yield {"bench": bench, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            return
        yield rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small CI run: sqlite only, small N (< 60 s)")
    ap.add_argument("--backends", nargs="+", choices=ALL_BACKENDS, help="boot benchmark backends (default: all)")
    ap.add_argument("--n", type=int, help="boots per backend (default 1000; --quick 20)")
    ap.add_argument("--hosts", type=int, help="fake compute hosts in the one compute worker (default 100)")
    ap.add_argument("--concurrency", type=int, default=16, help="HTTP client threads (default 16)")
    ap.add_argument("--only", nargs="+", choices=("boot", "floor", "scheduler", "api", "placement", "peer", "hosts"),
                    help="run only these")
    ap.add_argument("--profile", action="store_true", help="py-spy every process role during the boot phase")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/<timestamp>.jsonl)")
    args = ap.parse_args(argv)

    # Run from the repo with a scratch state dir: nothing touches ./var.
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("STRATUS_STATE_DIR", tempfile.mkdtemp(prefix="stratus-bench-"))
    quick = args.quick
    if quick:
        os.environ["STRATUS_BENCH_QUICK"] = "1"  # skip asking the DB/broker servers for their versions
    backends = args.backends or (("sqlite-filesystem",) if quick else ALL_BACKENDS)
    n = args.n or (20 if quick else 1000)
    hosts = args.hosts or (10 if quick else 100)
    only = set(args.only or ("boot", "floor", "scheduler", "api", "placement", "peer"))
    out = args.out or (REPO / "bench" / "results" / f"{utc_stamp()}{'-quick' if quick else ''}.jsonl")
    common = {"quick": quick, "command": "python -m bench.run " + " ".join(argv if argv is not None else
                                                                             sys.argv[1:])}
    t0 = time.monotonic()
    log(f"results -> {out}")

    boots: list[dict] = []
    if "boot" in only:
        from bench import boot
        for name in backends:
            log(f"boot benchmark: {name}, n={n}, hosts={hosts}")
            rec = _guard(lambda: boot.run(name, n=n, hosts=hosts, concurrency=args.concurrency,
                                          profile=args.profile), {"bench": "boot_delete", "backend": name, "n": n})
            boots.append(rec)
            emit({**common, **rec}, out)

    floors: list[dict] = []
    if "floor" in only:
        from bench import celery_floor
        for name in backends:
            rec = _guard(lambda: celery_floor.run(name, n=n, hosts=hosts, concurrency=args.concurrency),
                         {"bench": "celery_floor", "backend": name, "n": n})
            floors.append(rec)
            emit({**common, **rec}, out)

    if "api" in only:
        from bench import api_reads
        sizes = (200,) if quick else (1000, 10000)
        dbs = ("sqlite",) if quick else ("sqlite", "postgresql", "mariadb")
        for rec in _guarded_iter(api_reads.run(dbs, sizes, reps=3 if quick else 5), "api_servers_detail"):
            emit({**common, **rec}, out)

    if "placement" in only:
        from bench import placement_bench
        dbs = ("sqlite",) if quick else ("sqlite", "postgresql", "mariadb")
        for rec in _guarded_iter(placement_bench.run(dbs, hosts=1000 if quick else 10_000, reps=3 if quick else 25),
                                 "placement_candidates"):
            emit({**common, **rec}, out)
            if rec.get("queries"):
                log("placement candidates (" + rec["database"] + ")\n" + placement_bench.table(rec))

    if "scheduler" in only:
        from bench import scheduler_bench
        counts = (1000,) if quick else (1000, 10000, 50000)
        dbs = ("sqlite",) if quick else ("sqlite", "postgresql")
        for rec in _guarded_iter(scheduler_bench.run(counts, dbs), "scheduler"):
            emit({**common, **rec}, out)
            if rec.get("rows"):
                log("scheduler (" + rec["database"] + ")\n" + scheduler_bench.table(rec))

    if "hosts" in only:
        from bench import many_hosts
        per_worker = args.hosts or 1000
        rec = _guard(lambda: many_hosts.run(per_worker=per_worker, n=n, concurrency=args.concurrency),
                     {"bench": "many_hosts", "n": n})
        emit({**common, **rec}, out)

    if "peer" in only:
        ours = {}
        for rec in boots:
            if "boot" in rec:
                b, d = rec["boot"], rec["delete"]
                ours[rec["backend"]] = {
                    "boots_per_s": b["ops_per_s"], "deletes_per_s": d["ops_per_s"],
                    "boot_p50_ms": b["client_latency"].get("p50_ms"),
                    "single_boot_to_active_ms": ((rec.get("sequential_boot") or {}).get("client_latency") or {})
                    .get("p50_ms", rec.get("single_boot_client_latency_ms")),
                    "cpu_seconds_per_boot_and_delete": round((b["cpu_seconds_per_op"] or 0) +
                                                             (d["cpu_seconds_per_op"] or 0), 3),
                    "db_transactions_per_boot": (b["db_per_op"] or {}).get("begin"),
                    "db_transactions_per_boot_excluding_api_reads": (b["db_per_op_excluding_api"] or {}).get("begin"),
                    "pg_stat_database_per_boot": b.get("pg_stat_database_per_op"),
                    "placement_http_calls_per_boot": 0,
                }
        floor = {rec["backend"]: {k: rec.get(k) for k in ("chains_per_s", "cpu_seconds_per_chain",
                                                         "machine_busy_cpu_seconds_per_chain",
                                                         "ceiling_per_s_at_machine_cpu")}
                 for rec in floors if "chains_per_s" in rec}
        emit({**common, "bench": "peer_comparison", "nova_published": NOVA_PUBLISHED, "stratus": ours,
              "celery_floor_measured_here": floor,
              "targets": TARGETS, "nova_run_here": False,
              "note": "Nova was not installed or run; its figures are the published ones quoted in docs/design.md.",
              "load": loadavg()}, out)
    log(f"done in {time.monotonic() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
