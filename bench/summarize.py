"""Markdown summary of a results file: ``python -m bench.summarize bench/results/<timestamp>.jsonl``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

TARGET_TX = 25


def _services(phase: dict) -> str:
    """The database and broker servers' CPU per op, e.g. "postgresql 0.0125 + redis 0.0023" (— before it was kept)."""
    found = {k: v for k, v in (phase.get("service_cpu_seconds_per_op") or {}).items() if v >= 0.0005}
    return " + ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])) or "—"


def _fmt(v, unit: str = "") -> str:
    return "–" if v is None else f"{v}{unit}"


def summarize(path: Path) -> str:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = [f"Results file: `{path.name}` (git {next((r['env'].get('git') for r in recs if 'env' in r), '?')})", ""]
    boots = [r for r in recs if r["bench"] == "boot_delete"]
    if boots:
        out += ["### Boot / delete through the real processes (fake driver, "
                f"{boots[0]['hosts']} hosts in 1 compute worker, {boots[0]['client_threads']} HTTP clients)", "",
                "| backend | N | boots/s (≥ 50) | boot p50 / p95 / p99 ms, client (p50 ≤ 300) | boot p50 / p95 ms, "
                "DB created→launched | deletes/s | delete p50 / p95 / p99 ms | DB txns per boot (≤ 25): all / "
                "without API reads | SQL stmts per boot | pg xact_commit+rollback per boot | CPU s per boot + "
                "delete | one boot alone ms: warm-up / sequential p50 client, DB (p50 ≤ 300) | load avg during boot |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in boots:
            if "boot" not in r:
                out.append(f"| {r['backend']} | {r['n']} | {r.get('skipped') or r.get('error', '')[:120]} "
                           "| | | | | | | | | | |")
                continue
            b, d = r["boot"], r["delete"]
            bl, dl, sl = b["client_latency"], d["client_latency"], b["server_latency_created_to_launched"]
            pg = b.get("pg_stat_database_per_op")
            pg_s = f"{pg['xact_commit']} + {pg['xact_rollback']}" if pg else "n/a"
            cpu = round((b["cpu_seconds_per_op"] or 0) + (d["cpu_seconds_per_op"] or 0), 3)
            seq = r.get("sequential_boot") or {}
            alone = (f"{_fmt(r.get('single_boot_client_latency_ms'))} / "
                     f"**{_fmt((seq.get('client_latency') or {}).get('p50_ms'))}**, "
                     f"{_fmt((seq.get('server_latency_created_to_launched') or {}).get('p50_ms'))}")
            out.append(
                f"| {r['backend']} | {b['completed']}/{r['n']} | **{b['ops_per_s']}** | "
                f"**{bl.get('p50_ms')}** / {bl.get('p95_ms')} / {bl.get('p99_ms')} | {sl.get('p50_ms')} / "
                f"{sl.get('p95_ms')} | {d['ops_per_s']} | {dl.get('p50_ms')} / {dl.get('p95_ms')} / "
                f"{dl.get('p99_ms')} | {b['db_per_op']['begin']} / {b['db_per_op_excluding_api']['begin']} | "
                f"{b['db_per_op']['statements']} | {pg_s} | {cpu} | {alone} | "
                f"{b['load_during']} |")
        out.append("")
        out += ["CPU seconds per boot by process (boot phase); the benchmark's clients, the database and broker servers, "
                "and every busy CPU second of the machine, with the share the hypervisor stole:", "",
                "| backend | api | conductor | scheduler | compute | benchmark clients | DB + broker servers | "
                "machine busy | steal |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in boots:
            if "boot" in r:
                b = r["boot"]
                c, n = b["cpu_seconds"], max(1, b["completed"])
                out.append(f"| {r['backend']} | " + " | ".join(
                    str(round(c.get(k, 0) / n, 4)) for k in ("api", "conductor", "scheduler", "compute")) +
                    f" | {_fmt(b.get('client_cpu_seconds_per_op'))} | {_services(b)}"
                    f" | {_fmt(b.get('machine_busy_cpu_seconds_per_op'))} | {_fmt(b.get('machine_cpu_steal_share'))} |")
        out.append("")
        out += ["DB transactions (begin) / commits / statements per boot, by process (boot phase):", "",
                "| backend | api | conductor | scheduler | compute |", "|---|---|---|---|---|"]
        for r in boots:
            if "boot" in r:
                t, n = r["boot"]["db_by_role"], max(1, r["boot"]["completed"])
                out.append(f"| {r['backend']} | " + " | ".join(
                    (f"{round(t[k]['begin'] / n, 2)} / {round(t[k]['commit'] / n, 2)} / "
                     f"{round(t[k]['statements'] / n, 1)}" if k in t else "–")
                    for k in ("api", "conductor", "scheduler", "compute")) + " |")
        out.append("")
    floors = [r for r in recs if r["bench"] == "celery_floor"]
    if floors:
        out += ["### The Celery floor: a boot's six broker hops with no-op tasks (bench/celery_floor.py)", "",
                "| broker | N | chains/s | worker CPU s per chain: conductor / scheduler / compute / total | "
                "client CPU s | machine busy CPU s per chain | ceiling /s on this machine's cores |",
                "|---|---|---|---|---|---|---|"]
        for r in floors:
            if "chains_per_s" not in r:
                out.append(f"| {r.get('broker', r['backend'])} | {r['n']} | "
                           f"{r.get('skipped') or r.get('error', '')[:120]} | | | | |")
                continue
            c = r["cpu_seconds_per_chain"]
            out.append(f"| {r['broker']} | {r['n']} | **{r['chains_per_s']}** | {c['conductor']} / {c['scheduler']} / "
                       f"{c['compute']} / **{c['total']}** | {r['client_cpu_seconds_per_chain']} | "
                       f"{r['machine_busy_cpu_seconds_per_chain']} | **{r['ceiling_per_s_at_machine_cpu']}** |")
        out.append("")
    for r in recs:
        if r["bench"] == "scheduler" and r.get("rows"):
            out += [f"### Scheduler, one decision ({r['database']}; medians; load avg {r['load_before']} → "
                    f"{r['load_after']})", "",
                    "| hosts | cache refresh ms | filter+weigh ms (≤ 1,000-host sample) | claim ms | "
                    "**total ms** (10k: ≤ 10) | total p95 ms | total CPU ms (this process) | uncached: full load ms "
                    "| uncached: filter+weigh all ms | uncached total ms |",
                    "|---|---|---|---|---|---|---|---|---|---|"]
            for row in r["rows"]:
                out.append(f"| {row['hosts']:,} | {row['refresh_ms']} | {row['filter_weigh_ms']} | {row['claim_ms']} | "
                           f"**{row['total_ms']}** | {row['total_p95_ms']} | {row.get('total_cpu_ms')} | "
                           f"{row['load_ms']} | "
                           f"{row['filter_weigh_all_hosts_ms']} | {row['uncached_total_ms']} |")
            out.append("")
    apis = [r for r in recs if r["bench"] == "api_servers_detail" and r.get("rows")]
    if apis:
        out += ["### GET /servers/detail?limit=1000 (admin, microversion 2.96, in-process Flask)", "",
                "| database | servers in DB | **p50 ms** (1,000: ≤ 150) | p95 ms | min ms | CPU p50 ms (API process) | "
                "SQL statements | response KB | load avg before → after |", "|---|---|---|---|---|---|---|---|---|"]
        for r in apis:
            for row in r["rows"]:
                out.append(f"| {r['database']} | {row['servers_in_db']:,} | **{row['p50_ms']}** | {row['p95_ms']} | "
                           f"{row['min_ms']} | {row.get('cpu_p50_ms')} | {row['sql_statements']} | "
                           f"{row['response_bytes'] // 1024} | "
                           f"{r['load_before']} → {r['load_after']} |")
        out.append("")
    for r in recs:
        if r["bench"] == "placement_candidates" and r.get("queries"):
            from bench.placement_bench import table
            out += [f"### GET /placement/allocation_candidates, {r['providers']:,} providers ({r['database']}; "
                    f"{r['reps']} requests each, in-process Flask; target ≤ {r['target_ms']} ms for "
                    f"'{r['target_query']}'; load avg {r['load_before']} → {r['load_after']})", "", table(r), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
