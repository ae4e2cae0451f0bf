"""The chaos soak (tools/soak.py) for 3 minutes: SQLite + filesystem broker (processes killed; nothing to restart
under them) and PostgreSQL + Redis (private servers: processes killed, Redis restarted twice, PostgreSQL once).
Passes when the invariant checker finds nothing (bench/invariants.py).

The two soaks run at the same time (each its own stack, private servers and state dir; nothing shared): each
spends its 3 minutes mostly waiting (3 operations a second), so together they take the wall time of one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.stack import REPO, terminate
from tests.outage_support import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.slow

BACKENDS = ("sqlite-fs", "postgresql-redis")
TIMEOUT = 1200  # 180 s of chaos, up to 300 s waiting for quiet, the stack's start and stop


def _missing(backend: str) -> str | None:
    if backend == "postgresql-redis":
        return PrivatePostgres.available() or PrivateRedis.available()
    return None


@pytest.fixture(scope="module")
def soaks(request, tmp_path_factory):
    """backend -> (its soak process, its output dir), started together for every soak this session runs."""
    wanted = {item.callspec.params["backend"] for item in request.session.items
              if getattr(item, "module", None) is request.module
              and getattr(item, "originalname", None) == "test_soak_3_minutes"}
    running: dict[str, tuple[subprocess.Popen, Path]] = {}
    for backend in (b for b in BACKENDS if b in wanted and not _missing(b)):
        out = tmp_path_factory.mktemp(f"soak-{backend}")
        with open(out / "stdout.txt", "wb") as stdout, open(out / "stderr.txt", "wb") as stderr:
            running[backend] = (subprocess.Popen(
                [sys.executable, str(REPO / "tools" / "soak.py"), "--backend", backend, "--duration", "180",
                 "--out", str(out / "soak")], cwd=REPO, stdout=stdout, stderr=stderr), out)
    try:
        yield running
    finally:
        for proc, _ in running.values():  # a test that stopped early leaves no soak behind
            if proc.poll() is None:
                terminate(proc, 60)


@pytest.mark.timeout(TIMEOUT + 300)
@pytest.mark.parametrize("backend", BACKENDS)
def test_soak_3_minutes(backend, soaks):
    missing = _missing(backend)
    if missing:
        pytest.skip(f"!!! PRIVATE SERVICE UNAVAILABLE: {missing} !!!")
    proc, out = soaks[backend]
    try:
        returncode = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        returncode = proc.wait()
    stdout = (out / "stdout.txt").read_text(errors="replace")
    stderr = (out / "stderr.txt").read_text(errors="replace")
    print(stdout[-20000:], stderr[-5000:])
    assert returncode == 0, f"soak exit {returncode}:\n{stdout[-6000:]}\n{stderr[-3000:]}"
    assert "0 violations: every invariant holds" in stdout
    assert "kill" in stdout  # the chaos did happen
