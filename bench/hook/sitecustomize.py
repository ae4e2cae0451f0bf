"""Benchmark-only instrumentation, loaded by Python's ``site`` when bench/hook is on PYTHONPATH.

bench/boot.py puts this directory on the PYTHONPATH of the stack's processes (API, conductor, scheduler,
compute) and sets STRATUS_BENCH_TXDIR. Every process then counts, for all SQLAlchemy engines, the
transactions begun/committed/rolled back and the SQL statements sent, and writes the counters every 0.5 s to
``$STRATUS_BENCH_TXDIR/<pid>.json`` (with its argv, so the benchmark can attribute them to a process role).
``STRATUS_BENCH_SQLLOG=1`` also appends every statement (one line) to ``<pid>.sql`` there. Nothing here changes
behaviour; without STRATUS_BENCH_TXDIR it does nothing.
"""
from __future__ import annotations

import os


def _install(txdir: str) -> None:
    import json
    import sys
    import threading

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts = {"begin": 0, "commit": 0, "rollback": 0, "statements": 0}

    def bump(key):
        def fn(*_a, **_k):
            counts[key] += 1  # a lost increment under a thread race is acceptable for a benchmark counter
        return fn

    event.listen(Engine, "begin", bump("begin"))
    event.listen(Engine, "commit", bump("commit"))
    event.listen(Engine, "rollback", bump("rollback"))
    event.listen(Engine, "before_cursor_execute", bump("statements"))
    if os.environ.get("STRATUS_BENCH_SQLLOG"):
        # Statement texts too (one line each, in <pid>.sql): which statements a boot costs, by process.
        def log_statement(_conn, _cursor, statement, *_a, **_k):
            with open(os.path.join(txdir, f"{os.getpid()}.sql"), "a") as f:
                f.write(" ".join(statement.split())[:300] + "\n")
        event.listen(Engine, "before_cursor_execute", log_statement)

    def writer() -> None:
        pid = os.getpid()
        path = os.path.join(txdir, f"{pid}.json")
        last = None
        while True:
            snap = dict(counts)
            if snap != last:
                tmp = f"{path}.tmp"
                with open(tmp, "w") as f:
                    json.dump({"pid": pid, "argv": sys.argv, **snap}, f)
                os.replace(tmp, path)
                last = snap
            threading.Event().wait(0.5)

    def start() -> None:
        threading.Thread(target=writer, name="bench-txcount", daemon=True).start()

    def after_fork() -> None:
        for k in counts:
            counts[k] = 0
        start()

    os.register_at_fork(after_in_child=after_fork)
    start()


if os.environ.get("STRATUS_BENCH_TXDIR"):
    try:
        _install(os.environ["STRATUS_BENCH_TXDIR"])
    except Exception as exc:  # never break a process for a counter
        import sys
        print(f"bench hook disabled: {exc}", file=sys.stderr)
