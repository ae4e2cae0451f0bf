"""os-migrateLive's block_migration (issue 25): the API passes it for every microversion, the destination's shared
storage test file and the source's check decide (Nova's check_can_live_migrate_destination / _source), a refusal
ends the migration in ``error`` with the server left where it is, and the libvirt flags follow the choice."""
from __future__ import annotations

import uuid

import pytest

from drivers import shared_storage
from drivers.fake import FakeDriver
from tasks import compute_actions
from tests.unit.inprocess import compute_version as _v
from tests.unit.inprocess import inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_live_migration import _events, _state, canvases, placed  # noqa: F401 (fixtures)

NOT_SHARED = ("{} is not on shared storage: Shared storage live-migration requires either shared storage or "
              "boot-from-volume with no local disks.")
NOT_LOCAL = "{} is not on local storage: Block migration can not be used with shared storage."


@pytest.mark.parametrize("version, sent, passed", [
    ("2.1", True, True), ("2.24", "false", False), ("2.25", "auto", None), ("2.25", False, False),
    ("2.33", "True", True), ("2.34", False, False), ("2.34", "auto", None), ("2.90", True, True)])
def test_the_api_passes_block_migration_to_the_conductor(client, placed, canvases, version, sent, passed):
    from tasks.conductor import live
    r = client.post(f"/v2.1/servers/{placed.server_id}/action",
                    json={"os-migrateLive": {"host": "h2", "block_migration": sent}},
                    headers={**placed.admin.headers, **_v(version)})
    assert r.status_code == 202, r.get_data(as_text=True)
    ((name, (ctx,)),) = canvases
    assert ctx["block_migration"] is passed
    if name == "stratus.conductor.live_migration_prechecks":
        live.live_migration_prechecks(ctx)
        ctx = canvases[-1][1][0]
    assert [op for op, _ in ctx["ops"]] == ["check_live_migration_destination", "check_live_migration_source",
                                            "pre_live_migration", "live_migrate", "post_live_migration"]


def _hosts(tmp_path, shared: bool) -> tuple[FakeDriver, FakeDriver]:
    tag = uuid.uuid4().hex[:6]
    return (FakeDriver(f"src-{tag}", state_dir=tmp_path / "a"),
            FakeDriver(f"dst-{tag}", state_dir=tmp_path / ("a" if shared else "b")))


@pytest.mark.parametrize("shared, asked, chosen", [
    (False, None, True), (False, True, True), (False, False, NOT_SHARED),
    (True, None, False), (True, False, False), (True, True, NOT_LOCAL)])
def test_the_source_check_follows_the_shared_storage_test_file(tmp_path, shared, asked, chosen):
    src, dst = _hosts(tmp_path, shared)
    data = shared_storage.check_destination(dst)
    name = data["shared_storage_test_file"]
    assert (dst.state_dir / name).is_file()
    if isinstance(chosen, str):
        with pytest.raises(shared_storage.DriverError) as err:
            shared_storage.check_source(src, asked, data)
        assert str(err.value) == chosen.format(src.host)
    else:
        assert shared_storage.check_source(src, asked, data) is chosen
    assert (dst.state_dir / name).exists() is (not shared)  # the source removes the file it saw
    # without a state dir a fake host's storage is its own: never shared
    assert shared_storage.check_source(FakeDriver("mem-a"), None, shared_storage.check_destination(FakeDriver("mem-b")))


def test_a_refused_check_ends_the_migration_and_leaves_the_server(client, placed, canvases, tmp_path):
    from tasks.conductor import live, moves
    r = client.post(f"/v2.1/servers/{placed.server_id}/action",
                    json={"os-migrateLive": {"host": "h2", "block_migration": False}},
                    headers={**placed.admin.headers, **_v("2.34")})
    assert r.status_code == 202
    live.live_migration_prechecks(canvases[0][1][0])
    ctx = canvases[-1][1][0]
    src, dst = _hosts(tmp_path, shared=False)
    ctx.update(compute_actions._MOVE_OPS["check_live_migration_destination"](dst, ctx))
    with pytest.raises(shared_storage.InvalidSharedStorage) as err:
        compute_actions._MOVE_OPS["check_live_migration_source"](src, ctx)
    moves.move_failed({**ctx, "host": "h1"}, str(err.value), "")  # what the failed step reports
    state = _state()
    assert state["vm"] == ("active", None, "h1") and state["migrations"] == [("error", "h2")]
    assert state["allocations"] == [("h1", True)]
    message = NOT_SHARED.format(src.host)
    assert ("compute_live_migrate_instance", "Error", message) in _events(client, placed)["live-migration"]
    # the destination's pre step drops a test file the source did not see
    name = ctx["dest_check"]["shared_storage_test_file"]
    assert (dst.state_dir / name).is_file()
    ctx["block_migration"] = True
    compute_actions._pre_live_migration(dst, ctx)
    assert not (dst.state_dir / name).exists()


def test_libvirt_hosts_with_different_instances_paths_do_not_share(tmp_path):
    pytest.importorskip("libvirt")
    from core.settings import Settings
    from drivers.libvirt import LibvirtDriver

    def host(name: str, path: str) -> LibvirtDriver:
        (tmp_path / path).mkdir(exist_ok=True)
        return LibvirtDriver(name, Settings(instances_path=str(tmp_path / path), libvirt_virt_type="qemu"))
    a, b, c = host("lv-a", "one"), host("lv-b", "two"), host("lv-c", "one")
    assert shared_storage.check_source(a, None, shared_storage.check_destination(b)) is True
    assert shared_storage.check_source(a, None, shared_storage.check_destination(c)) is False


@pytest.mark.parametrize("block, destroyed", [(True, True), (False, False), (None, True)])
def test_a_rollback_keeps_the_disks_of_a_shared_storage_migration(block, destroyed):
    """After an aborted copy the destination removes what it prepared, but on shared storage (no block
    migration) the disks are the source guest's own: they stay."""
    calls = []

    class Destination(FakeDriver):
        def destroy(self, instance_uuid: str, destroy_disks: bool = True) -> None:
            calls.append((instance_uuid, destroy_disks))

    ctx = {"instance_uuid": str(uuid.uuid4()), "aborted": True}
    if block is not None:
        ctx["block_migration"] = block
    compute_actions._post_live_migration(Destination("h2"), ctx)
    assert calls == [(ctx["instance_uuid"], destroyed)]
