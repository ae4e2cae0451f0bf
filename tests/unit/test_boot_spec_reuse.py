"""tasks/compute: spawn reuses the instance spec build_disk read on the same host, and still stops when the
instance was deleted or moved on in between; without a kept spec it reads everything."""
from __future__ import annotations

import pytest

from core import states
from tasks import compute
from tasks.common import StopCanvas


@pytest.fixture
def instance(stratus_env):
    from core.db import write_session
    from core.models import Flavor, Instance
    with write_session() as s:
        flavor = Flavor(flavorid="f1", name="f1", vcpus=1, memory_mb=64)
        s.add(flavor)
        s.flush()
        s.add(Instance(uuid="11111111-2222-3333-4444-555555555555", display_name="vm", hostname="vm",
                       project_id="p", user_id="u", image_ref="img", flavor_id=flavor.id, flavor_snapshot={},
                       vcpus=1, memory_mb=64, root_gb=0, vm_state=states.BUILDING, task_state=states.SPAWNING,
                       reservation_id="r-1", networks_request="auto"))
    return "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Full spec reads, recorded (the spec itself is a stand-in)."""
    seen: list[str] = []

    def fake_instance_spec(uuid: str, expect_task_state: str | None = None, image_id: str | None = None):
        seen.append(uuid)
        return f"spec-of-{uuid}"
    monkeypatch.setattr(compute, "instance_spec", fake_instance_spec)
    compute._BOOT_SPECS.clear()
    return seen


def _set_task_state(uuid: str, **values) -> None:
    from sqlalchemy import update

    from core.db import write_session
    from core.models import Instance
    with write_session() as s:
        s.execute(update(Instance).where(Instance.uuid == uuid).values(**values))


def test_spawn_reuses_what_build_disk_read_on_the_same_host(instance, reads):
    ctx = {"instance_uuid": instance, "host": "h1"}
    spec = compute._boot_spec(ctx, "build_disk")
    compute._keep_boot_spec(ctx, spec)
    assert compute._boot_spec(ctx, "spawn") == spec
    assert reads == [instance]  # one full read for both steps
    assert compute._boot_spec(ctx, "spawn") == spec and reads == [instance, instance]  # kept once only


def test_a_spec_kept_for_another_host_is_not_used(instance, reads):
    compute._keep_boot_spec({"instance_uuid": instance, "host": "h1"}, "old")
    assert compute._boot_spec({"instance_uuid": instance, "host": "h2"}, "spawn") == f"spec-of-{instance}"


@pytest.mark.parametrize("change", [{"deleted": 1}, {"task_state": states.DELETING}])
def test_spawn_stops_when_the_instance_moved_on_after_build_disk(instance, reads, change):
    ctx = {"instance_uuid": instance, "host": "h1"}
    compute._keep_boot_spec(ctx, compute._boot_spec(ctx, "build_disk"))
    _set_task_state(instance, **change)
    with pytest.raises(StopCanvas):
        compute._boot_spec(ctx, "spawn")


def test_kept_specs_are_bounded(instance, reads, monkeypatch):
    monkeypatch.setattr(compute, "_BOOT_SPECS_MAX", 3)
    for i in range(5):
        compute._keep_boot_spec({"instance_uuid": f"u{i}", "host": "h"}, i)
    assert list(compute._BOOT_SPECS) == [("u2", "h"), ("u3", "h"), ("u4", "h")]
