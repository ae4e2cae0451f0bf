"""The floor Celery sets for a boot: the boot's six broker hops with no database and no work in them.

Workers run as the Procfile runs them (conductor: threads ×4 on conductor.rpc + conductor; scheduler: threads ×2;
compute: threads ×8 on one queue per fake host), on Stratus's own Celery app and configuration, with the no-op
tasks of bench/floor_tasks.py. ``concurrency`` client threads each make the API's call (tasks.messaging.rpc.call: publish,
wait for the result, forget it); the RPC publishes the five-step chain. Reported: chains per second, CPU seconds
per chain by role, the client's and the whole machine's busy CPU per chain, and what that machine CPU alone
allows on this machine's cores (the ceiling of the design before any database or driver work). Then a delete's
floor (``delete``): the same n RPCs publishing a delete's chain (compute terminate, conductor finish).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import REPO, busy_seconds, environment, loadavg, log, proc_stat_cpu, session_cpu

BROKER_OF = {"sqlite-filesystem": "filesystem", "postgresql-redis": "redis", "mariadb-rabbitmq": "rabbitmq"}


def _worker_commands(hosts: int) -> dict[str, list[str]]:
    """The Procfile's conductor and scheduler commands and the compute worker's pool, on the floor's tasks."""
    from tasks.compute_worker import POOL_ARGS
    from harness.stack import VENV_BIN, procfile_commands
    procfile = procfile_commands()
    shell = {role: ["bash", "-c", "exec " + procfile[role].replace("-A tasks.messaging.celery_app", "-A bench.floor_tasks")]
             for role in ("conductor", "scheduler")}
    queues = ",".join(f"compute.fake-{i}" for i in range(hosts))
    return {**shell, "compute": [str(VENV_BIN / "celery"), "-A", "bench.floor_tasks", "worker", "-l", "INFO",
                                 "-Q", queues, *POOL_ARGS, "-n", "floor-compute@%h"]}


def _ctx(i: int, hosts: int) -> dict:
    host = f"fake-{i % hosts}"
    return {"instance_uuid": str(uuidlib.uuid4()), "request_id": f"req-{uuidlib.uuid4()}", "action": "create",
            "t0": time.time(), "tried": [], "requested_host": None, "hosts": [host, f"fake-{(i + 1) % hosts}"],
            "explanation": f"{hosts} of {hosts} hosts passed the filters", "host": host, "alternates": [],
            "attempt": 1}


def _done(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run(backend_name: str, n: int = 1000, hosts: int = 100, concurrency: int = 16, timeout: float = 300) -> dict:
    from harness.stack import BACKENDS
    backend = BACKENDS[backend_name].own()
    broker = BROKER_OF[backend_name]
    record: dict = {"bench": "celery_floor", "backend": backend_name, "broker": broker, "n": n, "hosts": hosts,
                    "client_threads": concurrency, "env": environment("none", broker), "load_before": loadavg()}
    missing = backend.missing()
    if missing and broker in missing:
        return {**record, "skipped": missing}
    state = Path(tempfile.mkdtemp(prefix=f"stratus-floor-{broker}-"))
    done_file = state / "done.txt"
    from harness.stack import VENV_BIN
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "STRATUS_STATE_DIR": str(state), "STRATUS_BROKER_URL": backend.broker_url(),
           "STRATUS_BENCH_FLOOR_DONE": str(done_file), "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if v != "" or not k.startswith("STRATUS_")}
    procs: dict[str, subprocess.Popen] = {}
    log(f"celery floor: {broker} broker, n={n}, {hosts} compute queues")
    try:
        for role, cmd in _worker_commands(hosts).items():
            procs[role] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(state / f"{role}.log", "ab"),
                                           stderr=subprocess.STDOUT, start_new_session=True)
        # The client (the API's role) runs in its own process, configured by the same environment as the workers.
        sids = ",".join(f"{role}={p.pid}" for role, p in procs.items())
        client = subprocess.run([sys.executable, "-m", "bench.celery_floor", "--client", str(n), str(hosts),
                                 str(concurrency), sids, str(timeout)], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=timeout + 120)
        if client.returncode != 0:
            logs = "\n".join(f"--- {r}\n{(state / f'{r}.log').read_text()[-1500:]}" for r in procs)
            raise RuntimeError(f"floor client failed:\n{client.stderr[-3000:]}\n{logs}")
        return {**record, **json.loads(client.stdout.strip().splitlines()[-1]), "load_after": loadavg()}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        backend.cleanup()


def client_main(n: int, hosts: int, concurrency: int, sids_text: str, timeout: float) -> dict:
    """The measured part, in the client process: warm-up, then ``n`` RPCs and their chains, bracketed by the
    workers' CPU counters and the machine's."""
    from tasks.messaging import rpc
    rpc.configure_client()
    done_file = Path(os.environ["STRATUS_BENCH_FLOOR_DONE"])
    sids = {role: int(pid) for role, _, pid in (item.partition("=") for item in sids_text.split(","))}
    pool = ThreadPoolExecutor(concurrency)  # kept for the whole run, as an API process keeps its request threads
    _wait_ready(rpc.call, timeout=60)
    _wait_done(done_file, 1, timeout)  # the answered probe's chain (earlier probes that timed out may follow)
    base = _done(done_file)
    _submit(rpc.call, [_ctx(i, hosts) for i in range(20)], pool)  # warm-up (connections, imports)
    _wait_done(done_file, base + 20, timeout)
    time.sleep(0.5)  # stragglers of timed-out probes
    base = _done(done_file)
    cpu0, machine0, client0, t0 = session_cpu(sids), proc_stat_cpu(), time.process_time(), time.monotonic()
    _submit(rpc.call, [_ctx(i, hosts) for i in range(n)], pool)
    _wait_done(done_file, base + n, timeout)
    wall = time.monotonic() - t0
    cpu1, machine1, client1 = session_cpu(sids), proc_stat_cpu(), time.process_time()
    cpu = {r: round((cpu1[r] - cpu0[r]) / n, 4) for r in sids}
    busy = (busy_seconds(machine1) - busy_seconds(machine0)) / n
    # A delete's floor: its RPC and two-step chain (compute terminate, conductor finish), the same n, same threads.
    base = _done(done_file)
    dcpu0, dmachine0, dt0 = session_cpu(sids), proc_stat_cpu(), time.monotonic()
    _submit(rpc.call, [_ctx(i, hosts) for i in range(n)], pool, "stratus.conductor.bench_floor_delete")
    _wait_done(done_file, base + n, timeout)
    dwall = time.monotonic() - dt0
    dcpu1, dmachine1 = session_cpu(sids), proc_stat_cpu()
    dcpu = {r: round((dcpu1[r] - dcpu0[r]) / n, 4) for r in sids}
    dbusy = (busy_seconds(dmachine1) - busy_seconds(dmachine0)) / n
    return {"delete": {"wall_s": round(dwall, 2), "chains_per_s": round(n / dwall, 1),
                       "cpu_seconds_per_chain": {**dcpu, "total": round(sum(dcpu.values()), 4)},
                       "machine_busy_cpu_seconds_per_chain": round(dbusy, 4)},
            "wall_s": round(wall, 2), "chains_per_s": round(n / wall, 1),
            "cpu_seconds_per_chain": {**cpu, "total": round(sum(cpu.values()), 4)},
            "client_cpu_seconds_per_chain": round((client1 - client0) / n, 4),
            "machine_busy_cpu_seconds_per_chain": round(busy, 4),
            # Boots per second this machine's cores could carry if a boot cost only these hops.
            "ceiling_per_s_at_machine_cpu": round((os.cpu_count() or 1) / busy, 1) if busy else None}


def _submit(call, ctxs: list[dict], pool: ThreadPoolExecutor, task: str = "stratus.conductor.bench_floor_create") -> None:
    # The same threads every time: the rpc:// result backend sends a reply to its calling thread's own queue.
    for reply in pool.map(lambda ctx: call(task, ctx), ctxs):
        assert reply, reply


def _wait_ready(call, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            call("stratus.conductor.bench_floor_create", _ctx(0, 1), timeout=5)
            return
        except Exception as exc:  # workers still starting
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"floor workers did not answer: {last!r}")


def _wait_done(done_file: Path, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _done(done_file) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_done(done_file)} of {target} floor chains finished in {timeout} s")
        time.sleep(0.02)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        n, hosts, concurrency, sids, timeout = sys.argv[2:7]
        print(json.dumps(client_main(int(n), int(hosts), int(concurrency), sids, float(timeout))))
    else:
        print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "postgresql-redis",
                             n=int(sys.argv[2]) if len(sys.argv) > 2 else 500)))
