"""A resumed canvas (tasks/conductor/resume.py) runs its compute step a second time: each step must end in the
same place when it already ran. The steps the fake driver refused to repeat are checked here."""
from __future__ import annotations

import uuid

from core import image_store
from core.power_state import PowerState
from drivers import fake
from drivers.base import ImageSpec, InstanceSpec
from tasks import compute_actions


def _guest(drv: fake.FakeDriver, tmp_path) -> InstanceSpec:
    image = tmp_path / "base.img"
    image.write_bytes(b"b" * 512)
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="r", hostname="r", project_id="p", user_id="u", vcpus=1,
                        memory_mb=64, root_gb=1, flavor_name="f", flavor_id="1",
                        image=ImageSpec(id="img", disk_format="raw", container_format="bare", size=512,
                                        checksum=None, properties={}, path=str(image)))
    drv.build_disk(spec)
    drv.spawn(spec)
    return spec


def test_shelve_offload_sent_twice_reports_the_snapshot_it_stored(stratus_env, tmp_path, monkeypatch):
    drv = fake.FakeDriver(f"resume-{uuid.uuid4().hex[:6]}", state_dir=tmp_path)
    monkeypatch.setattr(compute_actions, "driver_for", lambda host: drv)
    spec = _guest(drv, tmp_path)
    ctx = {"instance_uuid": spec.uuid, "request_id": "req-1", "action": "shelve", "task_state": "shelving",
           "ops": [["shelve_offload", drv.host]], "host": drv.host, "final_host": drv.host, "offload": True,
           "image_id": str(uuid.uuid4()), "image_disk_format": "raw"}
    first = compute_actions.move_op.run(dict(ctx))
    assert drv.list_instances() == [] and image_store.exists(ctx["image_id"])
    again = compute_actions.move_op.run(dict(ctx))  # the finish was lost; the conductor sends the canvas again
    keys = ("image_size", "image_md5", "image_sha256")
    assert {k: again[k] for k in keys} == {k: first[k] for k in keys} and again["image_size"] == 512
    assert again["power_state"] == PowerState.NOSTATE and again["ops"] == []


def test_power_steps_sent_twice_end_in_the_same_state(tmp_path):
    drv = fake.FakeDriver(f"resume-{uuid.uuid4().hex[:6]}", state_dir=tmp_path)
    spec = _guest(drv, tmp_path)
    for call, state in ((drv.pause, PowerState.PAUSED), (drv.unpause, PowerState.RUNNING),
                        (drv.suspend, PowerState.SUSPENDED), (drv.resume, PowerState.RUNNING),
                        (drv.power_off, PowerState.SHUTDOWN), (drv.power_on, PowerState.RUNNING)):
        call(spec.uuid)
        call(spec.uuid)
        assert drv.get_info(spec.uuid).power_state == state, call.__name__
