"""GET /servers/detail with 1,000 and 10,000 servers in the DB (limit=1000), and its SQL statement count.

In-process: the Flask app (the same create_app() gunicorn serves) through its test client, on a fresh
database (SQLite file, and PostgreSQL / MariaDB when they run here); servers are inserted directly
(bench/seed.py). Timed: the whole request (auth, query, render, JSON), median and p95 over ``reps`` requests,
as admin (all fields, host_status) for the admin project. Target (docs/design.md): <= 150 ms for 1,000 rows, and
a constant number of SQL statements per request (also asserted by tests/functional/test_query_count.py).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import environment, loadavg, log
from core.db import reset as db_reset

ADMIN_PASSWORD = "bench-admin"


@contextlib.contextmanager
def app_on(database_url: str, state_dir: Path):
    """A Stratus Flask app on ``database_url`` (empty: SQLite in state_dir) with a fresh schema, plus an admin
    token. Yields (app, client, headers, project_id, user_id)."""
    saved = {k: os.environ.get(k) for k in ("STRATUS_STATE_DIR", "STRATUS_DATABASE_URL", "STRATUS_PUBLIC_URL",
                                            "STRATUS_NETWORK_CIDR")}
    os.environ.update(STRATUS_STATE_DIR=str(state_dir), STRATUS_PUBLIC_URL="http://stratus.bench",
                      STRATUS_NETWORK_CIDR="10.64.0.0/16")
    if database_url:
        os.environ["STRATUS_DATABASE_URL"] = database_url
    else:
        os.environ.pop("STRATUS_DATABASE_URL", None)
    db_reset()
    try:
        from app import create_app
        from core import db
        from app.identity import service
        from core.models import Base
        state_dir.mkdir(parents=True, exist_ok=True)
        Base.metadata.create_all(db.get_engine())
        with db.write_session() as s:
            user = service.bootstrap(s, ADMIN_PASSWORD)
            project = service.ensure_project(s, "admin")
            uid, pid = user.id, project.id
        app = create_app({"TESTING": True})
        client = app.test_client()
        r = client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
        assert r.status_code == 201, r.get_json()
        yield app, client, {"X-Auth-Token": r.headers["X-Subject-Token"]}, pid, uid
    finally:
        db_reset()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def count_statements():
    """Counts SQL statements sent through the app's engines while the block runs: yields a list to read."""
    from sqlalchemy import event

    from core import db
    engines = db.engines()
    seen: list[str] = []

    def on_exec(conn, cursor, statement, params, context, executemany):
        seen.append(statement)
    for e in engines:
        event.listen(e, "before_cursor_execute", on_exec)
    try:
        yield seen
    finally:
        for e in engines:
            event.remove(e, "before_cursor_execute", on_exec)


def scratch_db(kind: str):
    """(url, drop) for a fresh database of ``kind`` on the local server, or ("", None) for SQLite."""
    from harness.stack import BACKENDS
    backend = {"postgresql": BACKENDS["postgresql-redis"], "mariadb": BACKENDS["mariadb-rabbitmq"]}.get(kind)
    if backend is None:
        return "", None
    if backend.missing() and kind in backend.missing():
        return None, None
    from harness.stack import Backend
    b = Backend(f"bench-{kind}", kind, "filesystem")
    return b.database_url(), b.cleanup


def measure(kind: str, sizes=(1000, 10000), reps: int = 10) -> dict:
    url, drop = scratch_db(kind)
    if url is None:
        return {"bench": "api_servers_detail", "database": kind, "skipped": f"{kind} not running"}
    rows = []
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with app_on(url, Path(tmp) / "state") as (app, client, headers, pid, uid):
                from core import db
                from bench.seed import seed_servers
                have = 0
                for size in sizes:
                    with db.write_session() as s:
                        seed_servers(s, pid, uid, size - have, start=have)
                    have = size
                    log(f"api reads: {kind} {size} servers")
                    path = "/v2.1/servers/detail?limit=1000"
                    hdrs = {**headers, "X-OpenStack-Nova-API-Version": "2.96"}
                    r = client.get(path, headers=hdrs)  # warm-up
                    assert r.status_code == 200, r.get_data(as_text=True)[:500]
                    times, cpu = [], []
                    for _ in range(reps):
                        c0, t0 = time.process_time(), time.perf_counter()
                        r = client.get(path, headers=hdrs)
                        body = r.get_data()
                        times.append(time.perf_counter() - t0)
                        cpu.append(time.process_time() - c0)
                    with count_statements() as stmts:
                        client.get(path, headers=hdrs)
                    servers = r.get_json()["servers"]
                    rows.append({"servers_in_db": size, "returned": len(servers), "response_bytes": len(body),
                                 "p50_ms": round(statistics.median(times) * 1000, 1),
                                 "p95_ms": round(sorted(times)[max(0, int(len(times) * .95) - 1)] * 1000, 1),
                                 "min_ms": round(min(times) * 1000, 1), "sql_statements": len(stmts),
                                 # the API process's CPU per request (less sensitive to other load than wall time)
                                 "cpu_p50_ms": round(statistics.median(cpu) * 1000, 1)})
                    log(f"  {rows[-1]}")
                profile = _profile(client, "/v2.1/servers/detail?limit=1000",
                                   {**headers, "X-OpenStack-Nova-API-Version": "2.96"})
        finally:
            if drop:
                drop()
    first = rows[0] if rows else {}
    return {"bench": "api_servers_detail", "database": kind, "env": environment(kind, "none"),
            "load_before": load_before, "load_after": loadavg(), "limit": 1000, "microversion": "2.96",
            "reps": reps, "rows": rows, "target_1000_ms": 150.0,
            "meets_target_1000": (first.get("p50_ms", 1e9) <= 150.0) if first.get("servers_in_db") == 1000 else None,
            "statements_constant": len({r["sql_statements"] for r in rows}) == 1, "profile_top": profile}


def _profile(client, path: str, headers: dict) -> list:
    """cProfile of one request: the functions with the most cumulative time (where a list's time goes)."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    client.get(path, headers=headers)
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt or 1e-9
    out = []
    for (file, line, fn), (cc, nc, tt, ct, callers) in stats.stats.items():
        out.append((ct, tt, nc, f"{fn} ({'/'.join(Path(file).parts[-2:])}:{line})"))
    out.sort(reverse=True)
    return [{"fn": name, "cum_ms": round(ct * 1000, 1), "self_ms": round(tt * 1000, 1), "calls": nc}
            for ct, tt, nc, name in out[:25]] + [{"total_ms": round(total * 1000, 1)}]


def run(databases=("sqlite", "postgresql", "mariadb"), sizes=(1000, 10000), reps: int = 10):
    """Yields one record per database."""
    for kind in databases:
        yield measure(kind, sizes, reps)
