"""The fake driver honours the contract: idempotent steps, power states, shared state per host."""
from __future__ import annotations

import uuid

import pytest

from core.power_state import PowerState
from drivers.base import DriverError, ImageSpec, InstanceNotFound, InstanceSpec
from drivers.fake import FakeDriver


def spec(**meta) -> InstanceSpec:
    image = ImageSpec(id="img", disk_format="raw", container_format="bare", size=1, checksum=None, properties={},
                      path="/dev/null")
    return InstanceSpec(uuid=str(uuid.uuid4()), name="vm", hostname="vm", project_id="p", user_id="u", vcpus=2,
                        memory_mb=256, root_gb=1, flavor_name="f", flavor_id="1", image=image, metadata=meta)


def test_lifecycle_and_idempotency():
    d = FakeDriver(f"host-{uuid.uuid4().hex[:6]}")
    s = spec()
    d.build_disk(s)
    d.build_disk(s)
    d.spawn(s)
    d.spawn(s)  # a redelivered spawn finds the guest instead of making a second
    assert d.list_instances() == [s.uuid]
    assert d.get_info(s.uuid).power_state == PowerState.RUNNING
    assert d.get_available_resource().vcpus_used == 2
    d.power_off(s.uuid)
    assert d.get_info(s.uuid).power_state == PowerState.SHUTDOWN
    d.power_on(s.uuid)
    d.pause(s.uuid)
    assert d.get_info(s.uuid).power_state == PowerState.PAUSED
    with pytest.raises(DriverError):
        d.suspend(s.uuid)
    d.unpause(s.uuid)
    d.reboot(s.uuid, "HARD")
    assert "rebooted (hard)" in d.get_console_output(s.uuid)
    d.destroy(s.uuid)
    d.destroy(s.uuid)
    with pytest.raises(InstanceNotFound):
        d.get_info(s.uuid)


def test_one_process_serves_many_hosts_and_state_is_per_host():
    a, b = FakeDriver("fa-" + uuid.uuid4().hex[:6]), FakeDriver("fb-" + uuid.uuid4().hex[:6])
    s = spec()
    a.build_disk(s)
    a.spawn(s)
    assert b.list_instances() == []
    assert FakeDriver(a.host).list_instances() == [s.uuid]  # a new driver object for the same host sees it


def test_injected_failures_are_reschedulable():
    d = FakeDriver("f-" + uuid.uuid4().hex[:6])
    s = spec(**{"fake:fail_spawn": "boom"})
    d.build_disk(s)
    with pytest.raises(DriverError, match="boom") as err:
        d.spawn(s)
    assert err.value.reschedulable
