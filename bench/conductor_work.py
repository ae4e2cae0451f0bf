"""The conductor's own CPU per boot and delete, in one process, without the rest of the stack (issue 30): on a
private PostgreSQL database, ``N`` times create_instances, claim, finish_boot, server_action (delete) and
finish_delete, with publishing stubbed; prints the process's CPU ms per boot + delete after a warm-up (prepared
statements, caches). For A/B pairs on a loaded machine, where the whole stack's figures only show the load:
``.venv/bin/python -m bench.conductor_work [N]`` from each side's worktree, alternated.
"""
from __future__ import annotations

import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from bench.api_reads import app_on
from harness.stack import BACKENDS


class _NotSent:
    def __init__(self, *_a, **_k) -> None:
        pass

    def apply_async(self) -> None:
        pass


def _seed(pid: str) -> None:
    from core import db
    from core.models import Flavor, Image
    from core.writes import resources
    with db.write_session() as s:
        for host in ("h1", "h2"):
            resources.report_service(s, host, {"hypervisor_hostname": host, "hypervisor_type": "fake",
                                               "hypervisor_version": 1, "vcpus": 100000, "memory_mb": 10 ** 8,
                                               "local_gb": 10 ** 6, "host_ip": None})
        s.add(Flavor(flavorid="42", name="m1.nano", vcpus=1, memory_mb=128, root_gb=1))
        s.add(Image(id="img", name="img", status="active", owner=pid, visibility="public"))


def _boot_and_delete(boot, i: int, pid: str, uid: str) -> None:
    uuid = str(uuidlib.uuid4())
    rid = f"req-{uuid}"
    boot.create_instances.run({"uuids": [uuid], "name": f"s{i}", "project_id": pid, "user_id": uid,
                               "image_id": "img", "flavor_id": "42", "request_id": rid, "reservation_id": "r"})
    ctx = boot.claim.run({"instance_uuid": uuid, "request_id": rid, "action": "create", "hosts": ["h1", "h2"],
                          "tried": []})
    boot.finish_boot.run(ctx)
    out = boot.server_action.run({"instance_uuid": uuid, "action": "delete", "request_id": f"{rid}-d",
                                  "user_id": uid, "project_id": pid})
    assert "ok" in out, out
    boot.finish_delete.run({"instance_uuid": uuid, "request_id": f"{rid}-d", "action": "delete",
                            "host": ctx["host"], "task_state": "deleting"})


def main(n: int = 200, warmup: int = 30) -> float:
    backend = next(b for b in BACKENDS.values() if b.database == "postgresql").own()
    try:
        with app_on(backend.database_url(), Path(tempfile.mkdtemp()) / "state") as (_app, _c, _h, pid, uid):
            from tasks.conductor import boot
            boot.boot_canvas = boot.Chain = _NotSent  # the canvases are not sent: no broker here
            _seed(pid)
            for i in range(warmup):
                _boot_and_delete(boot, i, pid, uid)
            t0 = time.process_time()
            for i in range(n):
                _boot_and_delete(boot, warmup + i, pid, uid)
            ms = 1000 * (time.process_time() - t0) / n
    finally:
        backend.cleanup()
    print(f"conductor CPU ms per boot + delete: {ms:.2f} (n={n})")
    return ms


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
