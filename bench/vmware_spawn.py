"""VMware driver spawn (create + power on) vs bare pyVmomi CreateVM_Task + PowerOnVM_Task, same spec, same run.

Starts its own vcsim (tools/build-vcsim) on a free 127.0.0.1 port unless --port is given (an already running
simulator or vCenter: then pass --host/--protocol/--user and the password in STRATUS_VMWARE_PASSWORD).
Prints one JSON line. Usage: .venv/bin/python bench/vmware_spawn.py [-n 10]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVim.task import WaitForTask  # noqa: E402

from core.settings import Settings  # noqa: E402
from drivers.base import InstanceSpec  # noqa: E402
from drivers.vmware import make_driver  # noqa: E402


def start_vcsim(user: str, password: str) -> tuple[subprocess.Popen, int]:
    binary = subprocess.run([str(REPO / "tools" / "build-vcsim")], check=True, capture_output=True,
                            text=True).stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([binary, "-port", "0", "-username", user, "-password", password],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit(f"vcsim did not start (got {line!r})")
    return proc, int(line.split(":")[2].split("/")[0])


def spec(i: int) -> InstanceSpec:
    return InstanceSpec(uuid=str(uuid.uuid4()), name=f"bench-{i}", hostname=f"bench-{i}", project_id="bench",
                        user_id="bench", vcpus=1, memory_mb=256, root_gb=1, flavor_name="m1.tiny", flavor_id="1",
                        image=None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="repetitions (default 10)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="use this endpoint instead of starting vcsim")
    ap.add_argument("--protocol", default="http")
    ap.add_argument("--user", default="bench")
    args = ap.parse_args()

    proc = None
    password = os.environ.get("STRATUS_VMWARE_PASSWORD", "")
    if not args.port:
        password = secrets.token_hex(12)
        proc, args.port = start_vcsim(args.user, password)
    settings = Settings(vmware_host=args.host, vmware_port=args.port, vmware_protocol=args.protocol,
                        vmware_user=args.user, vmware_password=password, vmware_insecure=1)
    driver = make_driver("bench-node", settings)
    bare = None
    try:
        driver.init_host()
        inv = driver._inv
        bare = SmartConnect(protocol=args.protocol, host=args.host, port=args.port, user=args.user, pwd=password,
                            disableSslCertValidation=True)
        # The same folder, pool and spec the driver uses, bound to the bare connection's stub.
        from pyVmomi import vim
        folder = vim.Folder(inv["vm_folder"]._moId, bare._stub)
        pool = vim.ResourcePool(inv["resource_pool"]._moId, bare._stub)

        def run_driver(s: InstanceSpec) -> float:
            t = time.perf_counter()
            driver.spawn(s)
            return time.perf_counter() - t

        def run_bare(s: InstanceSpec) -> float:
            config = driver._config_spec(s, inv)
            t = time.perf_counter()
            task = folder.CreateVM_Task(config=config, pool=pool)
            WaitForTask(task, si=bare)
            vm = task.info.result
            WaitForTask(vm.PowerOnVM_Task(), si=bare)
            return time.perf_counter() - t

        def wait_poll(task) -> object:
            while True:  # the cheapest possible wait: read task.info until it is final
                info = task.info
                if info.state == "success":
                    return info.result
                if info.state == "error":
                    raise info.error
                time.sleep(0.01)

        def run_bare_poll(s: InstanceSpec) -> float:
            config = driver._config_spec(s, inv)
            t = time.perf_counter()
            vm = wait_poll(folder.CreateVM_Task(config=config, pool=pool))
            wait_poll(vm.PowerOnVM_Task())
            return time.perf_counter() - t

        def cleanup(s: InstanceSpec) -> None:
            driver.destroy(s.uuid)

        for fn in (run_driver, run_bare, run_bare_poll):  # warm-up (connections, caches)
            s = spec(-1)
            fn(s)
            cleanup(s)
        d_times, b_times, p_times = [], [], []
        for i in range(args.n):
            runs = [(run_driver, d_times), (run_bare, b_times), (run_bare_poll, p_times)]
            runs = runs[i % 3:] + runs[:i % 3]  # rotate the order
            for fn, out in runs:
                s = spec(i)
                out.append(fn(s))
                cleanup(s)
        d50, b50, p50 = (statistics.median(x) for x in (d_times, b_times, p_times))
        print(json.dumps({
            "bench": "vmware_spawn", "target": "vcsim" if proc else f"{args.protocol}://{args.host}:{args.port}",
            "n": args.n,
            "driver_spawn_ms_p50": round(d50 * 1000, 2), "bare_pyvmomi_ms_p50": round(b50 * 1000, 2),
            "driver_spawn_ms_mean": round(statistics.mean(d_times) * 1000, 2),
            "bare_pyvmomi_ms_mean": round(statistics.mean(b_times) * 1000, 2),
            "bare_poll_ms_p50": round(p50 * 1000, 2),
            # vs the bare create+power-on waited with pyVim.task.WaitForTask (the usual pyVmomi idiom)
            "overhead_pct": round((d50 - b50) / b50 * 100, 1),
            # vs the same calls waited by reading task.info directly (the lower bound)
            "overhead_vs_poll_pct": round((d50 - p50) / p50 * 100, 1),
        }), flush=True)
    finally:
        if bare is not None:
            Disconnect(bare)
        driver.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
