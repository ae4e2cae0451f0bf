"""Issue 25.1: compute hosts have no database. The conductor puts what a compute step needs in its message (the
instance spec; the config drive's user data sealed for the destination host), the compute builds the driver's
spec from the message alone, and what compute hosts report (power states, guests at start-up) is applied by the
conductor, which refuses a report about an instance that is not on the reporting host."""
from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from celery.exceptions import Ignore

from core import host_keys, image_store, states
from core.power_state import PowerState

UUID = "11111111-2222-3333-4444-555555555555"
USER_DATA = b"#cloud-config\npassword: hunter2-secret\n"


@pytest.fixture
def keys(stratus_env, monkeypatch):
    from tasks import compute
    host_keys.private_key.cache_clear()
    monkeypatch.setattr(compute, "_TERMINATED", type(compute._TERMINATED)())
    yield
    host_keys.private_key.cache_clear()


@pytest.fixture
def instance(keys):
    """An instance in SPAWNING on h1 with a config drive and user data; hosts h1 and h2 reported their keys."""
    from core import crypto
    from core.db import write_session
    from core.models import Flavor, Image, Instance
    from core.writes.resources import report_service
    with write_session() as s:
        flavor = Flavor(flavorid="f1", name="f1", vcpus=1, memory_mb=64)
        s.add(flavor)
        size, md5_hex, sha256_hex = image_store.write_stream("22222222-3333-4444-5555-666666666666",
                                                             io.BytesIO(b"abc"))
        s.add(Image(id="22222222-3333-4444-5555-666666666666", name="img", status="active", disk_format="qcow2",
                    container_format="bare", size=size, checksum=md5_hex, os_hash_algo="sha256",
                    os_hash_value=sha256_hex, owner="p", visibility="public", properties={"hw_disk_bus": "virtio"}))
        s.flush()
        s.add(Instance(uuid=UUID, display_name="vm", hostname="vm", project_id="p", user_id="u",
                       image_ref="22222222-3333-4444-5555-666666666666", flavor_id=flavor.id,
                       flavor_snapshot={"name": "f1", "id": "f1"}, vcpus=1, memory_mb=64, root_gb=0,
                       vm_state=states.BUILDING, task_state=states.SPAWNING, host="h1", reservation_id="r-1",
                       networks_request="none", config_drive="True",
                       user_data_enc=crypto.encrypt(base64.b64encode(USER_DATA).decode()),
                       metadata_items={"role": "web"}))
        for host in ("h1", "h2"):
            report_service(s, host, {"hypervisor_hostname": host, "hypervisor_type": "fake", "hypervisor_version": 1,
                                     "vcpus": 8, "memory_mb": 4096, "local_gb": 40, "host_ip": None,
                                     "sealing_key": host_keys.public_key(host)})
    return UUID


def _message(uuid: str, host: str) -> dict:
    from core.db import read_session
    from tasks.conductor import specs
    with read_session() as s:
        return specs.spec_message(s, uuid, host)


def test_a_sealed_block_opens_only_on_its_host_and_for_its_instance(keys):
    token = host_keys.seal(host_keys.public_key("h1"), USER_DATA, UUID)
    assert b"hunter2" not in token.encode() and base64.b64encode(USER_DATA).decode() not in token
    assert host_keys.open_sealed("h1", token, UUID) == USER_DATA
    with pytest.raises(host_keys.SealError):
        host_keys.open_sealed("h2", token, UUID)  # another host's key
    with pytest.raises(host_keys.SealError):
        host_keys.open_sealed("h1", token, "another-instance")
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(host_keys.SealError):
        host_keys.open_sealed("h1", tampered, UUID)


def test_the_host_key_is_kept_in_the_state_directory(keys, stratus_env):
    first = host_keys.public_key("h9")
    host_keys.private_key.cache_clear()
    assert host_keys.public_key("h9") == first  # a restarted worker keeps its key
    path = stratus_env / "host-keys" / "h9.x25519"
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_spec_travels_in_the_message_with_the_user_data_sealed(instance):
    from tasks import compute
    msg = _message(instance, "h1")
    text = json.dumps(msg)  # what the broker and Flower would hold
    assert "hunter2" not in text and base64.b64encode(USER_DATA).decode() not in text
    assert msg["image"]["disk_format"] == "qcow2" and msg["metadata"] == {"role": "web"}
    spec = compute.instance_spec({"instance_uuid": instance, "host": "h1", "spec": json.loads(text)})
    assert spec.image.properties == {"hw_disk_bus": "virtio"} and spec.image.path.endswith(spec.image.id)
    assert spec.config_drive_files["openstack/latest/user_data"] == USER_DATA
    assert json.loads(spec.config_drive_files["openstack/latest/meta_data.json"])["meta"] == {"role": "web"}
    from drivers.base import DriverError
    with pytest.raises(DriverError, match="cannot be opened on host h2"):  # a message sealed for h1, run on h2
        compute.instance_spec({"instance_uuid": instance, "host": "h2", "spec": msg})
    with pytest.raises(DriverError, match="no instance spec"):
        compute.instance_spec({"instance_uuid": instance, "host": "h1"})


def test_a_host_without_a_sealing_key_gets_no_user_data(instance):
    from sqlalchemy import update

    from core.db import write_session
    from core.models import ComputeNode
    from tasks.conductor import specs
    with write_session() as s:
        s.execute(update(ComputeNode).where(ComputeNode.host == "h2").values(sealing_key=None))
    with pytest.raises(specs.NoSealingKey):
        _message(instance, "h2")


def test_the_claim_puts_the_spec_of_the_chosen_host_in_the_next_steps_message(instance, monkeypatch):
    from sqlalchemy import update

    from core.db import write_session
    from core.models import ComputeNode, Instance
    from tasks.conductor import boot
    with write_session() as s:
        s.execute(update(Instance).where(Instance.uuid == instance).values(task_state=states.SCHEDULING, host=None))
        # h1 never reported a key: the claim passes it over for h2 (the user data could not go to h1)
        s.execute(update(ComputeNode).where(ComputeNode.host == "h1").values(sealing_key=None))
    out = boot.claim({"instance_uuid": instance, "request_id": "req-1", "action": "create", "hosts": ["h1", "h2"]})
    assert out["host"] == "h2" and out["spec"]["uuid"] == instance
    assert host_keys.open_sealed("h2", out["spec"]["config_drive"]["sealed"], instance) == USER_DATA
    with write_session() as s:
        s.execute(update(Instance).where(Instance.uuid == instance).values(task_state=states.SCHEDULING, host=None))
    from core.errors import ConductorError
    import tasks.common
    monkeypatch.setattr(tasks.common, "report_failure", lambda *a, **kw: None)
    with pytest.raises(ConductorError, match="h1: no sealing key reported"):
        boot.claim({"instance_uuid": instance, "request_id": "req-1", "action": "create", "hosts": ["h1"]})


def test_build_and_spawn_run_from_the_message_alone(instance, app, monkeypatch):
    """The image's data comes over the Image API (``app``, in-process) into the host's cache."""
    from drivers.fake import FakeDriver
    from tasks import compute
    drv = FakeDriver("h1")
    monkeypatch.setattr(compute, "driver_for", lambda host: drv)
    ctx = {"instance_uuid": instance, "host": "h1", "request_id": "r", "action": "create", "spec": _message(instance, "h1")}
    after_build = compute.build_disk.run(ctx)
    assert after_build["spec"] == ctx["spec"]  # spawn, the next step, needs it too
    after_spawn = compute.spawn.run(after_build)
    assert "spec" not in after_spawn  # finish_boot needs the IDs only
    assert drv.get_info(instance).power_state == PowerState.RUNNING


def test_the_boot_builds_the_disk_and_spawns_in_one_step(instance, app, monkeypatch):
    """The boot's compute step (one broker hop): the disk, then the running guest, from the message alone."""
    from drivers.fake import FakeDriver
    from tasks import compute
    from tasks.common import BOOT_STEPS
    assert BOOT_STEPS[BOOT_STEPS.index("stratus.conductor.claim") + 1:] == ("stratus.compute.build",
                                                                            "stratus.conductor.finish_boot")
    drv = FakeDriver("h1")
    monkeypatch.setattr(compute, "driver_for", lambda host: drv)
    ctx = {"instance_uuid": instance, "host": "h1", "request_id": "r", "action": "create", "spec": _message(instance, "h1")}
    out = compute.build.run(ctx)
    assert "spec" not in out  # finish_boot needs the IDs only
    assert drv.get_info(instance).power_state == PowerState.RUNNING
    assert compute.build.run(ctx)["instance_uuid"] == instance  # redelivered: finds the guest, builds nothing twice
    assert drv.list_instances() == [instance]


def test_a_delete_between_disk_and_spawn_leaves_no_guest(instance, app, monkeypatch):
    """The delete's terminate runs while the one boot step builds the disk: no guest is spawned for the deleted
    server and the disk built after the terminate is removed."""
    from drivers.fake import FakeDriver
    from tasks import compute
    drv = FakeDriver("h1")
    monkeypatch.setattr(compute, "driver_for", lambda host: drv)
    ctx = {"instance_uuid": instance, "host": "h1", "request_id": "r", "action": "create", "spec": _message(instance, "h1")}
    build_disk = drv.build_disk

    def disk_then_delete(spec):
        build_disk(spec)
        compute.terminate.run({**ctx, "action": "delete"})
        build_disk(spec)  # the disk the step was still making when the delete ran

    monkeypatch.setattr(drv, "build_disk", disk_then_delete)
    with pytest.raises(Ignore):  # StopCanvas: the canvas ends without a fault
        compute.build.run(ctx)
    assert instance not in drv.list_instances() and instance not in drv.list_disks()


def test_a_boot_step_queued_behind_the_delete_ends_quietly(instance, app, monkeypatch):
    from drivers.fake import FakeDriver
    from tasks import compute
    drv = FakeDriver("h1")
    monkeypatch.setattr(compute, "driver_for", lambda host: drv)
    ctx = {"instance_uuid": instance, "host": "h1", "request_id": "r", "action": "create", "spec": _message(instance, "h1")}
    compute.build_disk.run(ctx)
    compute.terminate.run({**ctx, "action": "delete"})
    with pytest.raises(Ignore):  # the step's StopCanvas: the canvas ends without a fault
        compute.spawn.run(ctx)
    assert instance not in drv.list_instances()


def test_the_conductor_refuses_a_power_report_about_an_instance_on_another_host(instance, caplog):
    from sqlalchemy import select, update

    from core.db import read_session, write_session
    from core.models import Instance
    from tasks.conductor import boot
    with write_session() as s:
        s.execute(update(Instance).where(Instance.uuid == instance).values(
            vm_state=states.ACTIVE, task_state=None, power_state=PowerState.RUNNING))
    with caplog.at_level(logging.WARNING):
        boot.sync_power_states("h2", [[instance, PowerState.SHUTDOWN]])
    assert "refused" in caplog.text and "h2" in caplog.text
    with read_session() as s:
        assert s.execute(select(Instance.vm_state, Instance.power_state).where(Instance.uuid == instance)).one() \
            == (states.ACTIVE, PowerState.RUNNING)
    boot.sync_power_states("h1", [[instance, PowerState.SHUTDOWN]])  # its own host: applied
    with read_session() as s:
        assert s.execute(select(Instance.vm_state, Instance.power_state).where(Instance.uuid == instance)).one() \
            == (states.STOPPED, PowerState.SHUTDOWN)


def test_the_compute_reports_only_power_states_that_changed(monkeypatch):
    from drivers.base import InstanceInfo, InstanceNotFound
    from tasks import compute
    powers = {"a": PowerState.RUNNING, "b": PowerState.RUNNING}

    class Driver:
        def get_info(self, uuid):
            if uuid not in powers:
                raise InstanceNotFound(uuid)
            return InstanceInfo(power_state=powers[uuid])
    sent = []
    monkeypatch.setattr(compute, "driver_for", lambda host: Driver())
    monkeypatch.setattr(compute.celery, "send_task", lambda name, args, queue: sent.append((name, args)))
    for uuid in ("a", "b", "c"):
        compute.track("hx", uuid, PowerState.RUNNING)
    powers["b"] = PowerState.SHUTDOWN
    compute.sync_power_states.run({"host": "hx", "hosts": ["hx"]})
    assert sent == [("stratus.conductor.sync_power_states",
                     ("hx", [["b", PowerState.SHUTDOWN], ["c", PowerState.NOSTATE]]))]
    sent.clear()
    compute.sync_power_states.run({"host": "hx", "hosts": ["hx"]})
    assert sent == []  # nothing changed since: nothing sent (an idle cloud sends nothing on)
    compute.forget("a")
    compute.forget("b")


def test_start_up_reconciliation_is_planned_by_the_conductor(instance, monkeypatch):
    from sqlalchemy import select, update

    from core.db import read_session, write_session
    from core.models import Instance
    from tasks import reconcile
    with write_session() as s:
        s.execute(update(Instance).where(Instance.uuid == instance).values(
            vm_state=states.ACTIVE, task_state=None, power_state=PowerState.RUNNING))
    sent = []
    monkeypatch.setattr(reconcile.celery, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    orphan = "99999999-2222-3333-4444-555555555555"
    answer = reconcile.reconcile_host("h1", [orphan], [])  # the guest the DB expects on h1 is missing
    assert sent == [("stratus.compute.reconciled", ("h1", answer), "compute.h1")]
    assert answer["missing"] == [instance] and answer["unknown"] == [orphan] and answer["adopt"] == {}
    with read_session() as s:
        assert s.scalar(select(Instance.vm_state).where(Instance.uuid == instance)) == states.ERROR
    sent.clear()
    with write_session() as s:
        s.execute(update(Instance).where(Instance.uuid == instance).values(vm_state=states.ACTIVE, host="h2"))
    answer = reconcile.reconcile_host("h1", [instance], [])  # its guest is on h1, the DB places it on h2
    assert answer["orphans"] == [instance] and answer["missing"] == []
