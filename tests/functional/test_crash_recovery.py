"""Nothing lost, nothing stuck, nothing orphaned when the compute worker is killed with -9 in the middle of a
boot (after the claim, inside build_disk, inside spawn), on Redis (a private redis-server) and on RabbitMQ (a
vhost of its own; the filesystem transport loses prefetched messages on kill -9, a documented limit). Then
start-up reconciliation: a guest the hypervisor lost goes to ERROR, a guest of a deleted instance is
destroyed."""
from __future__ import annotations

import collections
import json
import signal
import time
import uuid

import pytest

from tests.outage_support import Client, PrivateBackend, PrivateRedis, audit, query
from harness.stack import Backend, Stack, procfile_commands

pytestmark = pytest.mark.slow

HOST = "fake-1"
STEP_DELAY = 3  # seconds the fake driver spends in build_disk and in spawn
PHASES = ("after_claim", "mid_build_disk", "mid_spawn")
ROUNDS = [3, 3, 3, 3, 3, 3, 2]  # 20 boots, the phases in turn


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def crash_stack(request, tmp_path_factory):
    redis = None
    if request.param == "redis":
        missing = PrivateRedis.available()
        if not missing:
            redis = PrivateRedis(durable=False)
            redis.start()
            backend = PrivateBackend("sqlite-private-redis", "sqlite", "redis", mq_url=redis.url)
    else:  # a vhost of its own on the shared server: killing a worker does not touch the server
        backend = Backend("sqlite-rabbitmq", "sqlite", "rabbitmq")
        missing = backend.missing()
    if missing:
        pytest.skip(f"!!! BROKER {request.param} UNAVAILABLE: {missing} !!!")
    st = Stack(tmp_path_factory.mktemp(f"crash-{request.param}"), backend, compute_hosts=HOST, extra_env={
        "STRATUS_FAKE_BUILD_DISK_DELAY": str(STEP_DELAY), "STRATUS_FAKE_SPAWN_DELAY": str(STEP_DELAY),
        "STRATUS_BROKER_VISIBILITY_TIMEOUT": "10", "STRATUS_QUOTA_INSTANCES": "100",
        "STRATUS_QUOTA_CORES": "100", "STRATUS_QUOTA_RAM": "100000"})
    try:
        st.start()
        yield st
    finally:
        st.stop()
        if redis is not None:
            redis.close()


def guests(stack: Stack) -> dict[str, dict]:
    """The fake hypervisor's guests (they outlive the worker process as files)."""
    out = {}
    for path in (stack.compute_state_dir / "fake-guests" / HOST).glob("*.json"):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def restart_compute(stack: Stack) -> None:
    stack.start_process("compute", procfile_commands()["compute"])


def kill_compute(stack: Stack) -> None:
    stack.stop_process("compute", signal.SIGKILL)


def stage_of(stack: Stack, ids: list[str]) -> collections.Counter:
    g = guests(stack)
    claimed = {u for (u,) in query(stack, "SELECT uuid FROM instances WHERE task_state = 'spawning' AND host = "
                                         f"'{HOST}'")}
    def one(u: str) -> str:
        if u in g:
            rec = g[u]
            if rec.get("spawned"):
                return "spawned"
            return "mid_spawn" if rec.get("spawning") else "mid_build_disk" if rec.get("disk") == "building" \
                else "disk_built"
        return "after_claim" if u in claimed else "before_claim"
    return collections.Counter(one(u) for u in ids)


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_kill_compute_at_every_boot_step(crash_stack):
    stack = crash_stack
    api = Client(stack)
    image = api.image()
    booted: list[str] = []
    killed_at: collections.Counter = collections.Counter()
    for n, size in enumerate(ROUNDS):
        phase = PHASES[n % len(PHASES)]
        if phase == "after_claim":
            kill_compute(stack)  # the claim happens, build_disk waits in the host's queue for a worker
        ids = []
        for i in range(size):
            r = api.boot(image, f"crash-{n}-{i}")
            assert r.status_code == 202, r.text
            ids.append(r.json()["server"]["id"])
        booted += ids
        wait_for(lambda: stage_of(stack, ids)[phase] > 0, 90, f"a boot to reach {phase}")
        if phase != "after_claim":
            kill_compute(stack)
        killed_at.update(stage_of(stack, ids))
        restart_compute(stack)
    print(f"\nboots per stage when the compute worker was killed (-9): {dict(killed_at)}")
    assert all(killed_at[p] for p in PHASES), killed_at

    t0 = time.monotonic()
    final = api.wait_settled(set(booted), timeout=240)
    print(f"all {len(booted)} boots settled {time.monotonic() - t0:.1f} s after the last restart")
    statuses = collections.Counter(s["status"] for s in final.values())
    print(f"final statuses: {dict(statuses)}")
    assert set(final) == set(booted)
    for s in final.values():
        assert s["status"] == "ACTIVE" or (s["status"] == "ERROR" and s.get("fault", {}).get("message")), s
        assert s["OS-EXT-STS:task_state"] is None, s

    healed = audit(stack, "--delete")
    print(f"audit pass:\n{healed.stdout}")
    assert healed.returncode in (0, 4), healed.stderr
    assert audit(stack).returncode == 0
    assert query(stack, "SELECT count(*) FROM instances WHERE deleted = 0 AND task_state IS NOT NULL") == [(0,)]
    active = {i for i, s in final.items() if s["status"] == "ACTIVE"}
    g = guests(stack)
    assert active <= {u for u, rec in g.items() if rec.get("spawned")}, "an ACTIVE server without its guest"
    assert set(g) <= set(booted), "a guest that no instance owns"

    for sid in booted:
        assert api.delete(sid) == 204
    assert api.wait_gone(timeout=180) == []
    assert guests(stack) == {}, "guests or disks left behind"
    assert query(stack, "SELECT count(*) FROM allocations") == [(0,)]
    assert query(stack, f"SELECT vcpus_used, memory_mb_used, running_vms FROM compute_nodes WHERE host = '{HOST}'") \
        == [(0, 0, 0)]


def test_startup_reconciliation(crash_stack):
    stack = crash_stack
    api = Client(stack)
    image = api.image()
    ids = []
    for i in range(3):
        r = api.boot(image, f"recon-{i}")
        assert r.status_code == 202, r.text
        ids.append(r.json()["server"]["id"])
    settled = api.wait_settled(set(ids), timeout=120)
    assert {s["status"] for s in settled.values()} == {"ACTIVE"}, settled
    lost, kept, deleted = ids
    assert api.delete(deleted) == 204
    wait_for(lambda: deleted not in {s["id"] for s in api.servers()}, 60, "the delete")
    remembered = guests(stack)[lost]

    kill_compute(stack)
    guest_dir = stack.compute_state_dir / "fake-guests" / HOST
    (guest_dir / f"{lost}.json").unlink()  # the hypervisor lost this guest while its worker was down
    (guest_dir / f"{deleted}.json").write_text(json.dumps(remembered))  # a destroy that never happened
    stranger = str(uuid.uuid4())  # a guest this cloud never created
    (guest_dir / f"{stranger}.json").write_text(json.dumps(remembered))
    restart_compute(stack)

    wait_for(lambda: deleted not in guests(stack), 60, "the orphan to be destroyed")
    deadline = time.monotonic() + 60
    while (s := {x["id"]: x for x in api.servers()}[lost])["status"] != "ERROR" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert s["status"] == "ERROR" and f"not found on host {HOST}" in s["fault"]["message"], s
    assert {x["id"]: x for x in api.servers()}[kept]["status"] == "ACTIVE"
    assert stranger in guests(stack), "a guest unknown to the database must be left alone"
    (guest_dir / f"{stranger}.json").unlink()
    assert "1 adopted, 1 missing, 1 orphan(s) destroyed, 1 unknown" in stack.log("compute")

    for sid in (lost, kept):
        assert api.delete(sid) == 204
    assert api.wait_gone(timeout=120) == []
    assert guests(stack) == {}
    assert audit(stack).returncode == 0
