"""Resize to the server's own host (Nova's allow_resize_to_same_host): the conductor's host choice with the setting
off and on, the allocations the host holds at each step (in-process API and conductor; compute steps captured, not
run), and the fake driver's same-host resize, confirm and revert."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from core.power_state import PowerState
from drivers.fake import FakeDriver
from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_fake_driver import spec


def _add_host(s, host: str, memory_mb: int) -> None:
    from core.models import ComputeNode, Service, utcnow
    svc = Service(host=host, binary="nova-compute", topic="compute", last_seen_at=utcnow())
    s.add(svc)
    s.flush()
    s.add(ComputeNode(service_id=svc.id, host=host, hypervisor_hostname=host, hypervisor_type="fake",
                      hypervisor_version=1, vcpus=8, memory_mb=memory_mb, local_gb=40, vcpus_used=0,
                      memory_mb_used=0, local_gb_used=0, running_vms=0))
    s.flush()


def _place(world, host: str, memory_mb: int) -> None:
    """A compute host (8 vCPUs, 40 GB, ``memory_mb``), up, with world's server ACTIVE on it and claimed."""
    from core.db import write_session
    from core.models import Instance
    from core.writes import resources
    with write_session() as s:
        _add_host(s, host, memory_mb)
        inst = s.scalars(select(Instance).where(Instance.uuid == world.server_id)).one()
        inst.vm_state, inst.task_state, inst.host, inst.node = "active", None, host, host
        assert resources.claim(s, inst, host)


@pytest.fixture
def same_host(monkeypatch):
    """Turn allow_resize_to_same_host on or off (the settings are cached per process)."""
    from core.settings import get_settings

    def setting(on: bool) -> None:
        monkeypatch.setenv("STRATUS_ALLOW_RESIZE_TO_SAME_HOST", "true" if on else "false")
        get_settings.cache_clear()
    yield setting
    get_settings.cache_clear()


@pytest.fixture
def started(monkeypatch) -> list[dict]:
    """The contexts of the compute canvases the conductor starts (nothing runs)."""
    from tasks.conductor import moves
    ctxs: list[dict] = []

    class Chain:
        def __init__(self, first, *rest):
            self.first = first

        def apply_async(self) -> None:
            ctxs.append(self.first[1][0])

    monkeypatch.setattr(moves, "run_ops", lambda ctx, finish=None: ctxs.append(ctx))
    monkeypatch.setattr(moves, "sig", lambda name, *args: (name, args))
    monkeypatch.setattr(moves, "chain", Chain)
    return ctxs


@pytest.fixture
def big(client, world) -> str:
    r = client.post("/v2.1/flavors", json={"flavor": {"name": "big", "ram": 128, "vcpus": 2, "disk": 2, "id": "big"}},
                    headers={**world.admin.headers, **COMPUTE})
    assert r.status_code == 200, r.get_data(as_text=True)
    return "big"


def _act(client, world, body: dict):
    return client.post(f"/v2.1/servers/{world.server_id}/action", json=body, headers={**world.a.headers, **COMPUTE})


def _state(world) -> dict:
    from core.db import read_session
    from core.models import Allocation, ComputeNode, Instance, Migration
    with read_session() as s:
        inst = s.scalars(select(Instance).where(Instance.uuid == world.server_id)).one()
        migs = list(s.scalars(select(Migration).order_by(Migration.id)))
        allocs = s.execute(select(Allocation.instance_uuid, ComputeNode.host, Allocation.memory_mb, Allocation.vcpus,
                                  Allocation.disk_gb)
                           .join(ComputeNode, ComputeNode.id == Allocation.compute_node_id)).all()
        nodes = {n.host: (n.memory_mb_used, n.vcpus_used, n.local_gb_used) for n in s.scalars(select(ComputeNode))}
        keyed = {inst.uuid: "instance", **{m.uuid: "migration" for m in migs}}
        return {"vm": (inst.vm_state, inst.task_state, inst.host, inst.memory_mb),
                "migrations": [(m.status, m.source_compute, m.dest_compute) for m in migs],
                "allocations": sorted((keyed.get(u, u), h, mb, c, d) for u, h, mb, c, d in allocs),
                "usage": nodes}


def test_resize_never_picks_the_source_when_the_setting_is_off(client, world, big, same_host, started):
    _place(world, "h1", 4096)
    same_host(False)
    before = _state(world)
    r = _act(client, world, {"resize": {"flavorRef": big}})
    assert r.status_code == 400 and "No valid host" in r.get_json()["badRequest"]["message"]
    assert _state(world) == before and started == []  # the migration row and the re-keying rolled back

    from core.db import write_session
    with write_session() as s:
        _add_host(s, "h2", 4096)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    assert started[0]["dest"] == "h2" and started[0]["ops"] == [["resize_source", "h1"], ["resize_dest", "h2"]]


def test_same_host_resize_holds_both_flavors_until_revert_or_confirm(client, world, big, same_host, started):
    from tasks.conductor import moves
    _place(world, "h1", 4096)
    same_host(True)
    tiny = ("migration", "h1", 64, 1, 1)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    ctx = started[-1]
    assert ctx["dest"] == ctx["source"] == "h1"
    assert ctx["ops"] == [["resize_source", "h1"], ["resize_dest", "h1"]]
    both = {"allocations": [("instance", "h1", 128, 2, 2), tiny], "usage": {"h1": (192, 3, 3)}}
    state = _state(world)
    assert state["migrations"] == [("migrating", "h1", "h1")]
    assert {k: state[k] for k in both} == both
    moves.finish_move({**ctx, "power_state": PowerState.RUNNING})
    state = _state(world)
    assert state["vm"] == ("resized", None, "h1", 128) and {k: state[k] for k in both} == both

    # revert: only the source's step (it replaces the resized guest); the new flavor's claim goes
    assert _act(client, world, {"revertResize": None}).status_code == 202
    ctx = started[-1]
    assert ctx["ops"] == [["revert_source", "h1"]] and ctx["host"] == "h1"
    moves.finish_move({**ctx, "power_state": PowerState.RUNNING})
    state = _state(world)
    assert state["vm"] == ("active", None, "h1", 64) and state["migrations"] == [("reverted", "h1", "h1")]
    assert state["allocations"] == [("instance", "h1", 64, 1, 1)] and state["usage"] == {"h1": (64, 1, 1)}

    # resize again and confirm: the old flavor's (the migration's) allocation goes
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    moves.finish_move({**started[-1], "power_state": PowerState.RUNNING})
    assert _state(world)["usage"] == {"h1": (192, 3, 3)}
    assert _act(client, world, {"confirmResize": None}).status_code == 204
    ctx = started[-1]
    assert ctx["ops"] == [["confirm_source", "h1"]] and ctx["dest"] == "h1"
    state = _state(world)
    assert state["vm"] == ("active", None, "h1", 128)
    assert state["allocations"] == [("instance", "h1", 128, 2, 2)] and state["usage"] == {"h1": (128, 2, 2)}


def test_same_host_claim_must_fit_both_flavors(client, world, big, same_host, started):
    _place(world, "h1", 191)  # the old 64 MB + the new 128 MB do not fit in 191
    same_host(True)
    r = _act(client, world, {"resize": {"flavorRef": big}})
    assert r.status_code == 400 and "No valid host" in r.get_json()["badRequest"]["message"]
    assert _state(world)["allocations"] == [("instance", "h1", 64, 1, 1)] and started == []


def test_same_host_failure_gives_back_the_old_allocation(client, world, big, same_host, started):
    from tasks.conductor import moves
    _place(world, "h1", 192)  # exactly both
    same_host(True)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    assert _state(world)["usage"] == {"h1": (192, 3, 3)}
    moves.move_failed(started[-1], "boom", "")
    state = _state(world)
    assert state["vm"] == ("error", None, "h1", 64) and state["migrations"] == [("error", "h1", "h1")]
    assert state["allocations"] == [("instance", "h1", 64, 1, 1)] and state["usage"] == {"h1": (64, 1, 1)}


# --- the fake driver ---------------------------------------------------------------------------------------------

def _resized(s, **flavor):
    import dataclasses
    return dataclasses.replace(s, flavor_name="big", flavor_id="2", **flavor)


def test_fake_driver_same_host_resize_revert_and_confirm():
    import uuid
    from tasks.compute_actions import _MOVE_OPS
    host = f"host-{uuid.uuid4().hex[:6]}"
    d = FakeDriver(host)
    s = spec()
    d.build_disk(s)
    d.spawn(s)
    new = _resized(s, vcpus=4, memory_mb=512, root_gb=2)
    for _ in range(2):  # every step twice: a redelivered step finds its work done
        d.migrate_disk_and_power_off(s.uuid)
    assert d.get_info(s.uuid).power_state == PowerState.SHUTDOWN
    for _ in range(2):
        d.finish_migration(new, power_on=True)
    assert (d.get_info(s.uuid).vcpus, d.get_info(s.uuid).memory_mb) == (4, 512)
    for _ in range(2):
        d.finish_revert_migration(s.uuid, power_on=True)
    info = d.get_info(s.uuid)
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.RUNNING, 2, 256)

    d.migrate_disk_and_power_off(s.uuid)
    d.finish_migration(new, power_on=False)
    ctx = {"instance_uuid": s.uuid, "dest": host}
    for _ in range(2):
        _MOVE_OPS["confirm_source"](d, ctx)  # same host: the resized guest stays
    info = d.get_info(s.uuid)
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.SHUTDOWN, 4, 512)
    d.finish_revert_migration(s.uuid, power_on=True)  # nothing kept any more: the flavor stays the new one
    assert d.get_info(s.uuid).memory_mb == 512
    _MOVE_OPS["confirm_source"](d, {"instance_uuid": s.uuid, "dest": "elsewhere"})  # moved away: the guest goes
    assert d.list_instances() == []


@pytest.fixture
def in_place_driver(monkeypatch):
    """A compute driver that resizes only where the disks are (one declaring no supports_migrate_to_other_host)."""
    from tasks.conductor import moves
    monkeypatch.setattr(moves, "_moves_disks", lambda: False)


def test_a_driver_that_cannot_move_disks_resizes_in_place_only(client, world, big, same_host, started,
                                                                in_place_driver):
    from core.db import write_session
    _place(world, "h1", 4096)
    with write_session() as s:
        _add_host(s, "h2", 8192)  # roomier: a scheduler free to choose would take it
    same_host(False)
    before = _state(world)
    for body in ({"resize": {"flavorRef": big}}, {"migrate": None}):
        r = _act(client, world, body) if "resize" in body else client.post(
            f"/v2.1/servers/{world.server_id}/action", json=body, headers={**world.admin.headers, **COMPUTE})
        assert r.status_code == 409, r.get_data(as_text=True)
        assert "cannot move an instance's disks to another host" in r.get_json()["conflictingRequest"]["message"]
    assert _state(world) == before and started == []

    same_host(True)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    assert started[-1]["dest"] == started[-1]["source"] == "h1"


def test_drivers_declare_whether_they_move_disks():
    from drivers import capability
    assert capability("fake", "supports_migrate_to_other_host")
    assert capability("libvirt", "supports_migrate_to_other_host")  # its disk travels through the Image API
    assert capability("libvirt", "moves_disk_through_image_api")
    assert not capability("fake", "moves_disk_through_image_api")  # fake hosts share their state: nothing to copy


def test_failed_revert_frees_the_resources_its_migration_held(client, world, big, same_host, started):
    """Found by the chaos soak: a revert whose source step fails ends the migration in ``error``; the source's
    resources the migration held stayed allocated to it for ever (no live instance, no move in flight)."""
    from tasks.conductor import moves
    _place(world, "h1", 4096)
    same_host(True)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    moves.finish_move({**started[-1], "power_state": PowerState.RUNNING})
    assert _act(client, world, {"revertResize": None}).status_code == 202
    moves.move_failed(started[-1], "Instance could not be found on this host.", "")
    state = _state(world)
    assert state["vm"][0] == "error" and state["migrations"] == [("error", "h1", "h1")]
    assert state["allocations"] == [("instance", "h1", 128, 2, 2)] and state["usage"] == {"h1": (128, 2, 2)}


def test_delete_during_resize_gives_back_the_new_flavors_quota(client, world, big, same_host, started):
    """Found by the chaos soak: a resize counts its new flavor in the quota when it starts, the row takes it when
    the destination is done; a delete in between gave back the row's (old) flavor only, and the difference stayed
    used for ever."""
    from core.db import read_session, write_session
    from core.models import Instance, QuotaUsage
    from tasks.conductor import boot
    _place(world, "h1", 4096)
    same_host(True)
    with read_session() as s:
        before = s.get(QuotaUsage, world.a.project_id)
        before = (before.instances, before.cores, before.ram)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    with read_session() as s:
        during = s.get(QuotaUsage, world.a.project_id)
        assert (during.cores, during.ram) == (before[1] + 1, before[2] + 64)  # the new flavor counted already
    with write_session() as s:
        s.scalars(select(Instance).where(Instance.uuid == world.server_id)).one().task_state = "deleting"
    boot.finish_delete({"instance_uuid": world.server_id, "request_id": "req-delete", "action": "delete",
                        "host": "h1", "task_state": "deleting"})
    with read_session() as s:
        after = s.get(QuotaUsage, world.a.project_id)
        assert (after.instances, after.cores, after.ram) == (before[0] - 1, before[1] - 1, before[2] - 64)
    assert _state(world)["allocations"] == [] and _state(world)["usage"] == {"h1": (0, 0, 0)}
