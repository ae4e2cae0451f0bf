"""Live migration between compute worker PROCESSES (issue 25 item 4) with the fake driver: two workers, one host
each, each with its own state directory (its guests, its image cache) and no database; the controller (API,
conductor, scheduler) apart. The destination's pre_live_migration builds the disk from the image through its own
cache, the source hands the running guest over in the step's message and drops it, the destination takes it in.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.stack import BACKENDS, Stack
from tests.functional.test_server_actions import Api, boot, upload_image

pytestmark = [pytest.mark.services, pytest.mark.backends("sqlite-filesystem")]
HOSTS = ("lm-a", "lm-b")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    backend = BACKENDS["sqlite-filesystem"]
    if backend.missing():
        pytest.skip(f"!!! BACKEND {backend.name} UNAVAILABLE: {backend.missing()} !!!")
    st = Stack(tmp_path_factory.mktemp("lm-processes"), backend, compute_hosts=",".join(HOSTS),
               processes=("api", "conductor", "scheduler"),
               # a copy long enough to abort or force it (never reached: each one here is aborted or forced)
               extra_env={"STRATUS_FAKE_LIVE_MIGRATION_SECONDS": "60"})
    try:
        st.start()
        for host in HOSTS:  # a worker per host, each with a state dir of its own
            st.start_process(f"compute-{host}", "python -m tasks.compute_worker", env={
                "STRATUS_COMPUTE_HOSTS": host, "STRATUS_STATE_DIR": str(st.state_dir / f"node-{host}")})
        deadline = time.monotonic() + 60
        while st.registered_hosts() < len(HOSTS):
            assert time.monotonic() < deadline, "\n".join(st.log(f"compute-{h}")[-2000:] for h in HOSTS)
            time.sleep(0.2)
        api = Api(st, st.admin_token())
        api.image = upload_image(st.admin_token(), st, "lm-proc-img", b"live across processes " * 64)
        api.stack = st
        yield api
    finally:
        st.stop()


def guest_file(api: Api, host: str, sid: str) -> Path:
    return api.stack.state_dir / f"node-{host}" / "fake-guests" / host / f"{sid}.json"


def wait_for(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def running(api: Api, sid: str) -> dict:
    """Live-migrate to B and wait until the copy runs (A's worker reports it)."""
    r = api("POST", f"/servers/{sid}/action", {"os-migrateLive": {"host": HOSTS[1], "block_migration": "auto"}})
    assert r.status_code == 202, r.text
    found: list[dict] = []
    wait_for(lambda: found.extend(m for m in api("GET", f"/servers/{sid}/migrations", version="2.24").json()[
        "migrations"] if m["status"] == "running") or found)
    return found[0]


def test_live_migration_between_worker_processes(cloud):
    api = cloud
    sid = boot(api, api.image, "lm-proc", availability_zone=f"nova:{HOSTS[0]}", config_drive=True)
    assert api.server(sid)["OS-EXT-SRV-ATTR:host"] == HOSTS[0]
    before = api("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}}).json()["output"]
    assert guest_file(api, HOSTS[0], sid).is_file() and not guest_file(api, HOSTS[1], sid).exists()

    # block_migration false needs shared instance storage; each worker's state dir is its own: B's test file is
    # not seen on A, the migration ends in error after the 202 (2.34+) and the server stays on A
    r = api("POST", f"/servers/{sid}/action", {"os-migrateLive": {"host": HOSTS[1], "block_migration": False}})
    assert r.status_code == 202, r.text
    migrations = f"/os-migrations?instance_uuid={sid}"
    wait_for(lambda: api("GET", migrations, version="2.59").json()["migrations"][0]["status"] == "error")
    assert api.wait(sid, "ACTIVE", timeout=30)["OS-EXT-SRV-ATTR:host"] == HOSTS[0]
    events = api("GET", f"/servers/{sid}/os-instance-actions/{r.headers['x-openstack-request-id']}",
                 version="2.84").json()["instanceAction"]["events"]
    assert [e["details"] for e in events if e["result"] == "Error"] == [
        f"{HOSTS[0]} is not on shared storage: Shared storage live-migration requires either shared storage or "
        f"boot-from-volume with no local disks."]

    # aborted (2.24): the guest stays on A; B's worker removes what its pre step made
    mig = running(api, sid)
    assert api("DELETE", f"/servers/{sid}/migrations/{mig['id']}", version="2.24").status_code == 202
    server = api.wait(sid, "ACTIVE", timeout=30)
    assert server["OS-EXT-SRV-ATTR:host"] == HOSTS[0] and server["OS-EXT-STS:power_state"] == 1
    wait_for(lambda: not guest_file(api, HOSTS[1], sid).exists())
    assert not list((api.stack.state_dir / f"node-{HOSTS[1]}" / "fake-guests" / HOSTS[1] / "disks").iterdir())
    assert guest_file(api, HOSTS[0], sid).is_file()

    # forced to complete (2.22): the guest moves to B's worker
    mig = running(api, sid)
    assert api("POST", f"/servers/{sid}/migrations/{mig['id']}/action", {"force_complete": None},
               version="2.22").status_code == 202
    server = api.wait(sid, "ACTIVE", timeout=30)
    assert server["OS-EXT-SRV-ATTR:host"] == HOSTS[1]
    assert server["OS-EXT-STS:power_state"] == 1  # RUNNING, as the destination's worker reports it
    migs = api("GET", f"/os-migrations?instance_uuid={sid}", version="2.59").json()["migrations"]
    assert [(m["status"], m["source_compute"], m["dest_compute"]) for m in migs] == \
        [("completed", HOSTS[0], HOSTS[1]), ("cancelled", HOSTS[0], HOSTS[1]), ("error", HOSTS[0], HOSTS[1])]

    # the guest is host B's now (its worker's own state dir), running, with its disk built there; A dropped it
    assert not guest_file(api, HOSTS[0], sid).exists()
    arrived = json.loads(guest_file(api, HOSTS[1], sid).read_text())
    assert arrived["spawned"] and arrived["power_state"] == 1 and "incoming" not in arrived
    assert Path(arrived["image_path"]).parent == api.stack.state_dir / f"node-{HOSTS[1]}" / "fake-guests" / \
        HOSTS[1] / "disks"
    assert Path(arrived["image_path"]).is_file()
    assert arrived["config_drive"]  # the guest kept its config drive (the spec came in the message)
    # the same guest, not a new boot: B's worker serves the console the guest printed on A, and the hand-over
    after = api("POST", f"/servers/{sid}/action", {"os-getConsoleOutput": {}}).json()["output"]
    shown = before.splitlines()[:-1]  # (its last line may still have been printing)
    assert shown and after.splitlines()[:len(shown)] == shown
    assert f"live-migrated from {HOSTS[0]} to {HOSTS[1]} (forced to complete)" in after
    assert f"live migration to {HOSTS[1]} aborted" in after

    # B's worker runs the guest's power actions
    assert api("POST", f"/servers/{sid}/action", {"os-stop": None}).status_code == 202
    assert api.wait(sid, "SHUTOFF")["OS-EXT-SRV-ATTR:host"] == HOSTS[1]
