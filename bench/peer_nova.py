"""Stratus and upstream Nova side by side: ``python -m bench.run --only peer [--n N] [--hosts H] [--concurrency C]
[--pairs P]``.

The same workload alternately on each system, P pairs in one window: N boots (POST /servers from C client
threads, then the list poller of bench/boot.py until every server is ACTIVE) and N deletes (DELETE, then until
every server is listed DELETED), with H compute hosts. Stratus: bench/boot.py on PostgreSQL + Redis (a fresh stack
each pair). Nova: bench/nova_cloud.py, started once (fake.FakeDriver, one nova-compute process per host,
PostgreSQL + RabbitMQ, Placement), measured with the same client code (Poller and run_phase of bench/boot.py).
CPU per operation: every process of the system (its sessions) plus its database and broker servers.
"""
from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import boot, nova_cloud, nova_config
from bench.common import environment, loadavg, log, service_cpu, session_cpu

MICROVERSION = {"OpenStack-API-Version": "compute 2.37"}  # networks "none" needs 2.37


def _aux_stack(state: Path):
    """A Stratus API alone (SQLite): Identity for Nova's keystonemiddleware, Image and Networking for Nova."""
    from harness.stack import BACKENDS, SCHEMA_AND_BOOTSTRAP, VENV_BIN, Stack, procfile_commands
    stack = Stack(state, BACKENDS["sqlite-filesystem"], compute_hosts="aux-0", processes=("api",))
    # Stack.start, with room for a loaded machine (its bootstrap allows 120 s).
    state.mkdir(parents=True, exist_ok=True)
    stack.run(str(VENV_BIN / "python"), "-c", SCHEMA_AND_BOOTSTRAP, timeout=900)
    # Nova's server list asks Neutron for the security groups of every listed server's ports in one GET
    # (device_id=<uuid>&device_id=...): ~7 KB request lines, over gunicorn's default limit (4094).
    stack.start_process("api", procfile_commands()["api"].replace("gunicorn ", "gunicorn --limit-request-line 16384 ", 1))
    stack.wait_ready(timeout=600)
    return stack


def _nova_flavor(url: str, token: str) -> str:
    r = requests.post(f"{url}/v2.1/flavors", headers={"X-Auth-Token": token}, timeout=60,
                      json={"flavor": {"name": "bench", "ram": 512, "vcpus": 1, "disk": 1, "id": "42"}})
    if r.status_code not in (200, 409):
        raise RuntimeError(f"POST /flavors {r.status_code}: {r.text[:500]}")
    return "42"


def _snap(sids: dict[str, int], aux_sids: dict[str, int]) -> dict:
    cpu = session_cpu(sids)
    roles: dict[str, float] = {}
    for name, v in cpu.items():
        role = "compute" if name.startswith("compute-") else name
        roles[role] = roles.get(role, 0.0) + v
    return {"roles": roles, "aux": sum(session_cpu(aux_sids).values()), "services": service_cpu(),
            "load": loadavg()}


def _delta(before: dict, after: dict, n: int) -> dict:
    roles = {k: round(after["roles"][k] - before["roles"].get(k, 0.0), 2) for k in after["roles"]}
    services = {k: round(after["services"][k] - before["services"][k], 2) for k in ("postgresql", "rabbitmq")}
    procs = sum(roles.values())
    per = (lambda v: round(v / n, 4)) if n else (lambda v: None)
    return {"cpu_seconds": {**roles, "total": round(procs, 2)}, "cpu_seconds_per_op": per(procs),
            "service_cpu_seconds_per_op": {k: per(v) for k, v in services.items()},
            "cpu_seconds_per_op_with_db_and_broker": per(procs + sum(services.values())),
            "aux_stratus_api_cpu_seconds_per_op": per(after["aux"] - before["aux"]), "load_during": after["load"]}


def measure_nova(cloud: nova_cloud.NovaCloud, aux_sids: dict[str, int], token: str, image_id: str, n: int,
                 concurrency: int, timeout: float) -> dict:
    flavor = _nova_flavor(cloud.url, token)
    session = requests.Session()
    session.headers.update({"X-Auth-Token": token, **MICROVERSION})

    def create(i) -> str:
        r = session.post(f"{cloud.url}/v2.1/servers", timeout=120, json={"server": {
            "name": f"bench-{i}", "imageRef": image_id, "flavorRef": flavor, "networks": "none"}})
        if r.status_code != 202:
            raise boot.refusal(r)
        return r.json()["server"]["id"]

    def delete(uid: str) -> str:
        r = session.delete(f"{cloud.url}/v2.1/servers/{uid}", timeout=120)
        if r.status_code != 204:
            raise boot.refusal(r)
        return uid

    poller = boot.Poller(cloud.url, token)
    poller.start()
    record: dict = {"system": "nova", "n": n, "hosts": len(cloud.hosts), "client_threads": concurrency,
                    "load_before": loadavg()}
    try:
        warm = boot.run_phase("warmup", [0], create, poller, "ACTIVE", 1, 120)
        gone = boot.run_phase("warmup-delete", warm["_uids"], delete, poller, "DELETED", 1, 120)
        if warm["completed"] != 1 or gone["completed"] != 1:  # fail fast, with the evidence
            raise RuntimeError(f"warm-up boot/delete did not complete: {warm['refused'] or ''} {gone['refused'] or ''}"
                               f" compute log: {_errors(cloud)}")
        record["single_boot_client_latency_ms"] = warm["client_latency"].get("p50_ms")
        sids = cloud.sessions()
        for name, target, args in (("boot", "ACTIVE", list(range(n))), ("delete", "DELETED", None)):
            before = _snap(sids, aux_sids)
            phase = boot.run_phase(name, args if args is not None else record["boot"]["_uids"],
                                    create if name == "boot" else delete, poller, target, concurrency, timeout)
            time.sleep(1.5)
            phase.update(_delta(before, _snap(sids, aux_sids), phase["completed"]))
            record[name] = phase
    finally:
        poller.stop_event.set()
        poller.join(10)
    for name in ("boot", "delete"):
        if name in record:
            record[name].pop("_uids", None)
    record["load_after"] = loadavg()
    return record


def _errors(cloud: nova_cloud.NovaCloud) -> list[str]:
    return [line[-400:] for name in cloud.procs for line in cloud.log(name).splitlines() if " ERROR " in line][-8:]


def _stratus_figures(rec: dict) -> dict:
    """The Stratus record of bench/boot.py in the shape of Nova's: its processes plus PostgreSQL and Redis."""
    out = {"system": "stratus", "backend": rec.get("backend"), "load_before": rec.get("load_before"),
           "load_after": rec.get("load_after")}
    for name in ("boot", "delete"):
        ph = rec.get(name)
        if not ph:
            continue
        svc = ph.get("service_cpu_seconds_per_op") or {}
        procs = ph.get("cpu_seconds_per_op") or 0.0
        out[name] = {k: ph.get(k) for k in ("requested", "accepted", "completed", "errors_http", "instances_in_error",
                                            "wall_s", "ops_per_s", "client_latency", "cpu_seconds",
                                            "cpu_seconds_per_op", "load_during")}
        out[name]["service_cpu_seconds_per_op"] = {k: svc.get(k, 0.0) for k in ("postgresql", "redis")}
        out[name]["cpu_seconds_per_op_with_db_and_broker"] = round(
            procs + svc.get("postgresql", 0.0) + svc.get("redis", 0.0), 4)
    if "error" in rec:
        out["error"] = rec["error"]
    return out


def ratios(stratus: dict, nova: dict) -> dict | None:
    """Stratus over Nova for throughput, Nova over Stratus for CPU per operation (both "times better")."""
    try:
        return {
            "boots_per_s": round(stratus["boot"]["ops_per_s"] / nova["boot"]["ops_per_s"], 2),
            "deletes_per_s": round(stratus["delete"]["ops_per_s"] / nova["delete"]["ops_per_s"], 2),
            "cpu_per_boot": round(nova["boot"]["cpu_seconds_per_op_with_db_and_broker"] /
                                  stratus["boot"]["cpu_seconds_per_op_with_db_and_broker"], 2),
            "cpu_per_delete": round(nova["delete"]["cpu_seconds_per_op_with_db_and_broker"] /
                                    stratus["delete"]["cpu_seconds_per_op_with_db_and_broker"], 2),
        }
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def run(n: int = 200, hosts: int = 10, concurrency: int = 10, pairs: int = 3, backend: str = "postgresql-redis",
        emit=None):
    """Yield one record per system run, then the comparison (median ratios over the pairs)."""
    # SIGTERM (timeout, kill) unwinds through the finally below: no Nova process or database is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bindir = nova_cloud.install()
    state = Path(tempfile.mkdtemp(prefix="stratus-peer-"))
    aux = _aux_stack(state / "aux")
    from harness.stack import ADMIN_PASSWORD, free_port
    d = nova_config.NovaDeployment(state_dir=state / "nova", api_port=free_port(), placement_port=free_port(),
                                   db_port=free_port(), hosts=hosts,
                                   aux_url=aux.url, admin_password=ADMIN_PASSWORD)
    cloud = nova_cloud.NovaCloud(d, [f"nova-fake-{i}" for i in range(hosts)])
    timeout = max(300.0, n * 2.5)
    results: list[tuple[dict, dict]] = []
    t0 = time.monotonic()
    try:
        cloud.prepare()
        cloud.start()
        log(f"nova up in {time.monotonic() - t0:.0f} s ({bindir})")
        token = aux.admin_token()
        image_id = boot.create_image(aux.url, token)
        aux_sids = {name: p.pid for name, p in aux.procs.items()}
        base = {"bench": "peer_run", "n": n, "hosts": hosts, "client_threads": concurrency,
                "env": environment("postgresql", "rabbitmq (nova) / redis (stratus)"),
                "nova_versions": {"nova": nova_cloud.NOVA_VERSION, "placement": nova_cloud.PLACEMENT_VERSION}}
        for i in range(pairs):
            log(f"pair {i + 1}/{pairs}: stratus ({backend})")
            s = _stratus_figures(boot.run(backend, n=n, hosts=hosts, concurrency=concurrency))
            yield {**base, "pair": i + 1, **s}
            log(f"pair {i + 1}/{pairs}: nova")
            try:
                nv = measure_nova(cloud, aux_sids, token, image_id, n, concurrency, timeout)
            except Exception as exc:
                nv = {"system": "nova", "error": f"{type(exc).__name__}: {exc}"[:2000],
                      "log_tails": {k: cloud.log(k)[-1500:] for k in ("api", "conductor", "scheduler")}}
            yield {**base, "pair": i + 1, **nv}
            results.append((s, nv))
    finally:
        cloud.stop()
        aux.stop()
        cloud.drop()
        if os.environ.get("STRATUS_BENCH_KEEP") != "1":
            shutil.rmtree(state, ignore_errors=True)
        else:
            log(f"kept {state}")
    per_pair = [ratios(s, nv) for s, nv in results]
    ok = [r for r in per_pair if r]
    yield {"bench": "peer_comparison", "n": n, "hosts": hosts, "client_threads": concurrency, "pairs": pairs,
           "stratus_backend": backend, "nova_run_here": True,
           "nova_versions": {"nova": nova_cloud.NOVA_VERSION, "placement": nova_cloud.PLACEMENT_VERSION},
           "ratios_per_pair": per_pair,
           "median_ratios": {k: statistics.median(r[k] for r in ok) for k in ok[0]} if ok else None,
           "window_s": round(time.monotonic() - t0), "load": loadavg()}
