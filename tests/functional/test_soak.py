"""The chaos soak (tools/soak.py) for 3 minutes: SQLite + filesystem broker (processes killed; nothing to restart
under them) and PostgreSQL + Redis (private servers: processes killed, Redis restarted twice, PostgreSQL once).
Passes when the invariant checker finds nothing (bench/invariants.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness.stack import REPO
from tests.outage_support import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1500)  # 180 s of chaos, up to 300 s waiting for quiet, the stack's start and stop
@pytest.mark.parametrize("backend", ["sqlite-fs", "postgresql-redis"])
def test_soak_3_minutes(backend, tmp_path):
    if backend == "postgresql-redis":
        for missing in (PrivatePostgres.available(), PrivateRedis.available()):
            if missing:
                pytest.skip(f"!!! PRIVATE SERVICE UNAVAILABLE: {missing} !!!")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "soak.py"), "--backend", backend, "--duration", "180",
                           "--out", str(tmp_path / "soak")], cwd=REPO, capture_output=True, text=True, timeout=1200)
    print(proc.stdout[-20000:], proc.stderr[-5000:])
    assert proc.returncode == 0, f"soak exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert "0 violations: every invariant holds" in proc.stdout
    assert "kill" in proc.stdout  # the chaos did happen
