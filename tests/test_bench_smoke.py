"""CI keeps the benchmarks from rotting: ``python -m bench.run --quick`` (SQLite + filesystem broker, small N)
must run and print one parseable JSON line per benchmark with its figures. No timing is asserted here:
numbers come from bench/, never from timed tests."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_prints_every_figure(tmp_path):
    out = tmp_path / "quick.jsonl"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    by = {rec["bench"]: rec for rec in lines}
    # No peer_comparison: Nova is run only with --only peer (bench/peer_nova.py), never from constants.
    assert set(by) == {"scheduler", "api_servers_detail", "placement_candidates", "boot_delete", "celery_floor"}, \
        proc.stderr[-3000:]
    for rec in lines:
        assert rec["quick"] is True and "ts" in rec

    sched = by["scheduler"]
    assert sched["env"]["cpu_count"] >= 1 and len(sched["load_before"]) == 3
    row = sched["rows"][0]
    assert row["hosts"] == 1000
    for key in ("load_ms", "filter_weigh_ms", "claim_ms", "total_ms"):
        assert row[key] > 0

    api = by["api_servers_detail"]
    assert api["rows"][0]["returned"] == api["rows"][0]["servers_in_db"] == 200
    assert api["rows"][0]["p50_ms"] > 0 and api["rows"][0]["sql_statements"] > 0
    assert api["statements_constant"] is True

    placement = by["placement_candidates"]
    assert "error" not in placement, placement.get("error")
    assert placement["providers"] == 1000 and placement["database"] == "sqlite"
    for name, q in placement["queries"].items():
        assert q["p50_ms"] > 0 and q["sql_statements"] > 0 and q["sql_ms"] > 0, name
    counts = {name: q["candidates"] for name, q in placement["queries"].items()}
    assert 0 < counts["nova"] < counts["limit_1000"] == counts["no_limit"] < 1000, counts  # ~10 % full or disabled

    boot = by["boot_delete"]
    assert "error" not in boot, boot.get("error")
    assert boot["env"]["database"] == "sqlite" and boot["env"]["broker"] == "filesystem"
    for phase, key in (("boot", "boot"), ("delete", "delete")):
        ph = boot[key]
        assert ph["completed"] == ph["requested"] == 20, (ph, boot.get("api_tracebacks"), boot.get("log_warnings"))
        assert ph["ops_per_s"] > 0 and ph["client_latency"]["p50_ms"] > 0
        assert ph["cpu_seconds"]["total"] > 0 and len(ph["load_during"]) == 3
    assert boot["boot"]["db_per_op"]["begin"] > 0
    assert boot["boot"]["server_latency_created_to_launched"]["n"] == 20

    floor = by["celery_floor"]
    assert "error" not in floor, floor.get("error")
    assert floor["broker"] == "filesystem" and floor["n"] == 20 and floor["chains_per_s"] > 0
    assert set(floor["cpu_seconds_per_chain"]) == {"conductor", "scheduler", "compute", "total"}
    assert all(v > 0 for v in floor["cpu_seconds_per_chain"].values())

