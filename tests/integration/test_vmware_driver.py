"""The VMware driver against govmomi's vCenter simulator (vcsim, built by tools/build-vcsim).

Every observation of vSphere state is made through a separate pyVmomi connection, not through the driver.
"""
from __future__ import annotations

import logging
import os
import secrets
import uuid
from pathlib import Path

import pytest
import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from core.power_state import PowerState
from core.settings import Settings
from drivers import load_driver
from drivers.base import DriverError, ImageSpec, InstanceNotFound, InstanceSpec
from drivers.vmware import make_driver
from tests.vcsim import USER, inventory_vms, power_state, run as _run_vcsim

pytestmark = pytest.mark.vmware


def _settings(vcsim, **overrides) -> Settings:
    values = dict(compute_driver="vmware", vmware_host="127.0.0.1", vmware_port=vcsim["port"],
                  vmware_protocol="http", vmware_user=vcsim["user"], vmware_password=vcsim["password"],
                  vmware_task_timeout=30.0)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def driver(vcsim):
    d = load_driver("vmware", "vmware-node-1", _settings(vcsim))
    d.init_host()
    yield d
    d.close()


@pytest.fixture(scope="module")
def admin(vcsim):
    si = SmartConnect(protocol="http", host="127.0.0.1", port=vcsim["port"], user=vcsim["user"],
                      pwd=vcsim["password"])
    yield si
    Disconnect(si)


@pytest.fixture
def image(tmp_path) -> ImageSpec:
    path = tmp_path / "cirros.vmdk"
    path.write_bytes(os.urandom(64 * 1024))
    return ImageSpec(id=str(uuid.uuid4()), disk_format="vmdk", container_format="bare", size=64 * 1024,
                     checksum=None, properties={}, path=str(path))


@pytest.fixture
def instance(driver, image):
    spec = InstanceSpec(uuid=str(uuid.uuid4()), name="web-1", hostname="web-1", project_id="proj-a",
                        user_id="user-a", vcpus=2, memory_mb=512, root_gb=1, flavor_name="m1.small",
                        flavor_id="2", image=image)
    yield spec
    driver.destroy(spec.uuid)


@pytest.fixture
def running(driver, instance):
    driver.build_disk(instance)
    driver.spawn(instance)
    return instance


def test_spawn_creates_running_vm(driver, admin, vcsim, running, image):
    (vm,) = inventory_vms(admin, running.uuid)
    assert vm.runtime.powerState == vim.VirtualMachine.PowerState.poweredOn
    assert vm.config.hardware.numCPU == 2 and vm.config.hardware.memoryMB == 512
    assert vm.config.instanceUuid == running.uuid
    extra = {o.key: o.value for o in vm.config.extraConfig}
    assert extra["stratus.instance_uuid"] == running.uuid
    assert extra["stratus.project_id"] == "proj-a"
    assert extra["stratus.flavor"] == "m1.small"
    assert extra["stratus.image_id"] == image.id
    assert running.uuid in vm.config.annotation
    disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    assert len(disks) == 1 and disks[0].capacityInKB == 1024 * 1024
    # The image was uploaded to the datastore's image cache.
    ds_name = driver._inv["datastore_name"]
    assert extra["stratus.image_path"] == f"[{ds_name}] stratus_base/{image.id}.vmdk"
    r = requests.get(f"{vcsim['url'].rsplit('/sdk', 1)[0]}/folder/stratus_base/{image.id}.vmdk",
                     params={"dcPath": driver._inv["datacenter_path"], "dsName": ds_name},
                     headers={"Cookie": admin._stub.cookie}, timeout=10)
    assert r.status_code == 200 and r.content == Path(image.path).read_bytes()
    assert driver.get_info(running.uuid).power_state == PowerState.RUNNING
    assert running.uuid in driver.list_instances()


def test_power_off_and_on(driver, admin, running):
    driver.power_off(running.uuid)
    assert driver.get_info(running.uuid).power_state == PowerState.SHUTDOWN
    assert power_state(admin, running.uuid) == "poweredOff"
    driver.power_off(running.uuid)  # idempotent
    driver.power_on(running.uuid)
    assert driver.get_info(running.uuid).power_state == PowerState.RUNNING
    assert power_state(admin, running.uuid) == "poweredOn"
    driver.power_on(running.uuid)  # idempotent


def test_reboot(driver, admin, running):
    driver.reboot(running.uuid, "SOFT")  # no VMware Tools in vcsim: falls back to ResetVM_Task
    assert power_state(admin, running.uuid) == "poweredOn"
    driver.reboot(running.uuid, "HARD")
    assert driver.get_info(running.uuid).power_state == PowerState.RUNNING
    driver.power_off(running.uuid)
    driver.reboot(running.uuid, "HARD")  # a stopped guest is started, as Nova's hard reboot does
    assert power_state(admin, running.uuid) == "poweredOn"


def test_suspend_resume(driver, admin, running):
    driver.suspend(running.uuid)
    assert driver.get_info(running.uuid).power_state == PowerState.SUSPENDED
    assert power_state(admin, running.uuid) == "suspended"
    driver.suspend(running.uuid)  # idempotent
    driver.resume(running.uuid)
    assert driver.get_info(running.uuid).power_state == PowerState.RUNNING
    assert power_state(admin, running.uuid) == "poweredOn"


def test_destroy_removes_vm(driver, admin, running):
    driver.destroy(running.uuid)
    assert inventory_vms(admin, running.uuid) == []
    assert running.uuid not in driver.list_instances()
    with pytest.raises(InstanceNotFound):
        driver.get_info(running.uuid)
    driver.destroy(running.uuid)  # a missing guest is fine


def test_spawn_is_idempotent(driver, admin, instance):
    driver.build_disk(instance)
    driver.build_disk(instance)
    driver.spawn(instance)
    driver.spawn(instance)
    assert len(inventory_vms(admin, instance.uuid)) == 1
    # A retried spawn of a guest that is off powers it on rather than making another.
    driver.power_off(instance.uuid)
    driver.spawn(instance)
    assert len(inventory_vms(admin, instance.uuid)) == 1
    assert power_state(admin, instance.uuid) == "poweredOn"


def test_new_driver_finds_instances(vcsim, running):
    restarted = make_driver("vmware-node-1", _settings(vcsim))
    try:
        restarted.init_host()
        assert running.uuid in restarted.list_instances()
        assert restarted.get_info(running.uuid).power_state == PowerState.RUNNING
        restarted.power_off(running.uuid)
        assert restarted.get_info(running.uuid).power_state == PowerState.SHUTDOWN
    finally:
        restarted.close()


def test_relogin_after_session_loss(driver, admin, running):
    key = driver.session.si.content.sessionManager.currentSession.key
    admin.content.sessionManager.TerminateSession(sessionId=[key])
    generation = driver.session.generation
    driver.power_off(running.uuid)  # NotAuthenticated -> login again -> retried once
    assert driver.session.generation == generation + 1
    assert power_state(admin, running.uuid) == "poweredOff"
    assert driver.session.si.content.sessionManager.currentSession.key != key


def test_bad_credentials(vcsim, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(8)
    d = make_driver("vmware-node-1", _settings(vcsim, vmware_password=wrong))
    with pytest.raises(DriverError) as exc_info:
        d.init_host()
    message = str(exc_info.value)
    assert "login" in message.lower() and USER in message and "vmware_password" in message
    assert "incorrect user name or password" in message.lower() or "InvalidLogin" in message
    for secret in (wrong, vcsim["password"]):
        assert secret not in message
        assert secret not in caplog.text
        assert secret not in repr(exc_info.value.__context__ or "")
    assert exc_info.value.__cause__ is None


def test_unreachable_vcenter_is_host_local(vcsim):
    d = make_driver("vmware-node-1", _settings(vcsim, vmware_port=1))
    with pytest.raises(DriverError) as exc_info:
        d.init_host()
    assert exc_info.value.reschedulable and "127.0.0.1:1" in str(exc_info.value)


def test_unknown_cluster(vcsim):
    d = make_driver("vmware-node-1", _settings(vcsim, vmware_cluster="no-such-cluster"))
    with pytest.raises(DriverError, match="no-such-cluster"):
        d.init_host()
    d.close()


def test_vsphere_fault_becomes_driver_error(driver, running):
    driver.power_off(running.uuid)
    vm = driver._vm_cache[running.uuid]
    with pytest.raises(DriverError, match="InvalidPowerState"):
        driver.session.invoke(lambda si: driver._task(vm.PowerOffVM_Task(), "power off"), "power off")


def test_available_resource(driver, running):
    res = driver.get_available_resource()
    assert res.hypervisor_type == "VMware vCenter Server" and res.hypervisor_version > 0
    assert res.vcpus > 0 and res.memory_mb > 0 and res.local_gb > 0
    assert res.vcpus_used >= 2 and res.memory_mb_used >= 512
    assert 0 <= res.local_gb_used <= res.local_gb


def test_unsupported_operations(driver, running):
    for call in (lambda: driver.pause(running.uuid), lambda: driver.unpause(running.uuid),
                 lambda: driver.get_console(running.uuid, "vnc")):
        with pytest.raises(NotImplementedError):
            call()
    assert not driver.capabilities["supports_pause"] and driver.capabilities["supports_suspend"]



def test_https(vcsim):
    with _run_vcsim(vcsim["binary"], "-tls") as sim:
        assert sim["url"].startswith("https://")
        d = make_driver("vmware-node-1", _settings(sim, vmware_protocol="https", vmware_insecure=1))
        try:
            d.init_host()
            assert d.list_instances() == []
        finally:
            d.close()
        # Without vmware_insecure the simulator's self-signed certificate is refused.
        strict = make_driver("vmware-node-1", _settings(sim, vmware_protocol="https", vmware_insecure=0))
        with pytest.raises(DriverError, match="(?i)certificate"):
            strict.init_host()
