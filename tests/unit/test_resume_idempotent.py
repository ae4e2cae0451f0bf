"""A resumed canvas (tasks/conductor/resume.py) runs its compute step a second time: each step must end in the
same place when it already ran. The steps the fake driver refused to repeat are checked here."""
from __future__ import annotations

import uuid

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


def test_shelve_offload_sent_twice_keeps_the_snapshot_it_uploaded(client, admin, tmp_path, monkeypatch):
    drv = fake.FakeDriver(f"resume-{uuid.uuid4().hex[:6]}", state_dir=tmp_path)
    monkeypatch.setattr(compute_actions, "driver_for", lambda host: drv)
    spec = _guest(drv, tmp_path)
    made = client.post("/image/v2/images", headers=admin.headers, json={
        "name": "r-shelved", "disk_format": "raw", "container_format": "bare", "image_type": "snapshot",
        "instance_uuid": spec.uuid})
    assert made.status_code == 201, made.get_json()
    image_id = made.get_json()["id"]
    ctx = {"instance_uuid": spec.uuid, "request_id": "req-1", "action": "shelve", "task_state": "shelving",
           "ops": [["shelve_offload", drv.host]], "host": drv.host, "final_host": drv.host, "offload": True,
           "image_id": image_id, "image_disk_format": "raw"}
    first = compute_actions.move_op.run(dict(ctx))
    assert drv.list_instances() == [] and first["image_size"] == 512
    assert client.get(f"/image/v2/images/{image_id}", headers=admin.headers).get_json()["status"] == "active"
    again = compute_actions.move_op.run(dict(ctx))  # the finish was lost; the conductor sends the canvas again
    assert again["image_id"] == image_id  # the guest is gone, its uploaded snapshot still counts
    assert again["power_state"] == PowerState.NOSTATE and again["ops"] == []
    # no upload ever made it: the server is shelved without an image
    assert client.delete(f"/image/v2/images/{image_id}", headers=admin.headers).status_code == 204
    assert compute_actions.move_op.run(dict(ctx))["image_id"] is None


def test_power_steps_sent_twice_end_in_the_same_state(tmp_path):
    drv = fake.FakeDriver(f"resume-{uuid.uuid4().hex[:6]}", state_dir=tmp_path)
    spec = _guest(drv, tmp_path)
    for call, state in ((drv.pause, PowerState.PAUSED), (drv.unpause, PowerState.RUNNING),
                        (drv.suspend, PowerState.SUSPENDED), (drv.resume, PowerState.RUNNING),
                        (drv.power_off, PowerState.SHUTDOWN), (drv.power_on, PowerState.RUNNING)):
        call(spec.uuid)
        call(spec.uuid)
        assert drv.get_info(spec.uuid).power_state == state, call.__name__
