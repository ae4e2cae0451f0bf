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
- peer_run/peer_comparison (bench/peer_nova.py) only with --only peer: upstream Nova 34 + Placement installed from
                     PyPI into ~/.cache/stratus/nova-venv and run as real processes, alternated with Stratus
                     (--n boots, default 200; --hosts, default 10; --concurrency, default 10; --pairs, default 3)

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
    ap.add_argument("--concurrency", type=int, help="HTTP client threads (default 16; peer: 10)")
    ap.add_argument("--pairs", type=int, default=3, help="peer: alternated Stratus/Nova pairs (default 3)")
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
    only = set(args.only or ("boot", "floor", "scheduler", "api", "placement"))
    if "peer" in only:  # its own defaults (the workload), and its own concurrency default
        n = args.n or 200
        hosts = args.hosts or 10
    args.concurrency = args.concurrency or (10 if "peer" in only else 16)
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
        from bench import peer_nova
        for rec in _guarded_iter(peer_nova.run(n=n, hosts=hosts, concurrency=args.concurrency, pairs=args.pairs),
                                 "peer_comparison"):
            emit({**common, **rec}, out)
    log(f"done in {time.monotonic() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
