"""Beat's schedule follows the settings: no reclaim task while reclaim_instance_interval is 0 (Nova skips
_reclaim_queued_deletes then), one per interval (at most a minute apart) when soft delete is on."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.stack import REPO

_SCHEDULE = "import celeryconfig, json; print(json.dumps({k: v['schedule'] for k, v in celeryconfig.beat_schedule.items()}))"


def schedule(tmp_path, **env: str) -> dict:
    run = subprocess.run([sys.executable, "-c", _SCHEDULE], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "STRATUS_STATE_DIR": str(tmp_path), "STRATUS_BROKER_URL": "", **env})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_no_reclaim_task_while_soft_delete_is_off(tmp_path):
    entries = schedule(tmp_path, STRATUS_RECLAIM_INSTANCE_INTERVAL="0")
    assert "reclaim-soft-deleted" not in entries
    assert {"purge-expired-tokens", "expire-stuck-instances", "audit-allocations"} <= set(entries)


@pytest.mark.parametrize("interval, every", [("2", 2.0), ("3600", 60.0)])
def test_reclaim_runs_every_interval_at_most_a_minute_apart(tmp_path, interval, every):
    assert schedule(tmp_path, STRATUS_RECLAIM_INSTANCE_INTERVAL=interval)["reclaim-soft-deleted"] == every
