"""Pure logic of the further server actions: the fake driver's new contract methods, tag and metadata
validation, and the state table."""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from app.compute.instance_tags import validate_tag, validate_tags
from app.compute.metadata_items import validate_metadata
from core import states
from core.errors import ApiError
from core.power_state import PowerState
from drivers.base import DriverError
from drivers.fake import FakeDriver
from tests.unit.test_fake_driver import spec


def test_rescue_snapshot_crash_dump_diagnostics(tmp_path):
    d = FakeDriver(f"host-{uuid.uuid4().hex[:6]}")
    disk = tmp_path / "img"
    disk.write_bytes(b"disk bytes")
    s = dataclasses.replace(spec(), image=dataclasses.replace(spec().image, path=str(disk)))
    d.build_disk(s)
    d.spawn(s)
    d.rescue(s, None)
    d.rescue(s, None)  # idempotent
    assert d.get_console_output(s.uuid).count("rescued from image") == 1
    d.unrescue(s.uuid)
    with d.snapshot(s.uuid) as fh:
        assert fh.read() == b"disk bytes"
    d.trigger_crash_dump(s.uuid)
    diag = d.get_diagnostics(s.uuid)
    assert diag["state"] == "running" and diag["num_cpus"] == 2 and len(diag["cpu_details"]) == 2
    assert diag["memory_details"] == {"maximum": 256, "used": 256}
    d.power_off(s.uuid)
    with pytest.raises(DriverError):
        d.trigger_crash_dump(s.uuid)
    assert d.get_diagnostics(s.uuid)["state"] == "shutdown"


def test_migration_and_live_migration_between_fake_hosts():
    src, dst = FakeDriver(f"src-{uuid.uuid4().hex[:6]}"), FakeDriver(f"dst-{uuid.uuid4().hex[:6]}")
    s = spec()
    src.build_disk(s)
    src.spawn(s)
    src.migrate_disk_and_power_off(s.uuid)
    assert src.get_info(s.uuid).power_state == PowerState.SHUTDOWN
    bigger = dataclasses.replace(s, vcpus=4, memory_mb=512, flavor_name="big")
    dst.finish_migration(bigger, power_on=True)
    assert dst.get_info(s.uuid).vcpus == 4 and dst.get_info(s.uuid).power_state == PowerState.RUNNING
    dst.destroy(s.uuid)  # revert: the destination's guest goes, the source's comes back
    src.finish_revert_migration(s.uuid, power_on=True)
    assert src.get_info(s.uuid).power_state == PowerState.RUNNING
    src.live_migrate(s.uuid, dst.host)
    assert src.list_instances() == [] and dst.list_instances() == [s.uuid]
    with pytest.raises(DriverError):
        dst.live_migrate(s.uuid, "no-such-host")


@pytest.mark.parametrize("tag", ["", "a,b", "a/b", "x" * 61, 5])
def test_bad_tags(tag):
    with pytest.raises(ApiError) as err:
        validate_tag(tag)
    assert err.value.code == 400


def test_tag_limits():
    assert validate_tags(["a", "b c", "x" * 60]) == ["a", "b c", "x" * 60]
    with pytest.raises(ApiError, match="per-server limit 50"):
        validate_tags([str(i) for i in range(51)])


@pytest.mark.parametrize("metadata", [{"k": "v" * 256}, {"k" * 256: "v"}, {"bad/key": "v"}, {"k": 1}, ["k"]])
def test_bad_metadata(metadata):
    with pytest.raises(ApiError) as err:
        validate_metadata(metadata)
    assert err.value.code == 400


def test_state_table_matches_nova():
    assert states.status_of(states.RESCUED, None) == "RESCUE"
    assert states.status_of(states.SOFT_DELETED, None) == "SOFT_DELETED"
    assert states.status_of(states.ACTIVE, "rebuilding") == "REBUILD"
    assert states.status_of(states.RESIZED, None) == "VERIFY_RESIZE"
    assert states.status_of(states.ACTIVE, "resize_migrating") == "RESIZE"
    assert states.status_of(states.ACTIVE, "migrating") == "MIGRATING"
    assert states.MORE_ACTIONS["rescue"]["from"] == (states.ACTIVE, states.STOPPED, states.ERROR)


def test_driver_support_is_read_from_the_driver_class():
    from drivers import supports
    assert supports("fake", "rescue") and supports("fake", "live_migrate")
    assert supports("libvirt", "live_migrate") and not supports("vmware", "finish_migration")
    assert supports("libvirt", "pause")
