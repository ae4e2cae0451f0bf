"""The VMware vCenter compute driver (pyVmomi); one Stratus compute host = one vCenter cluster (as in Nova).

Guests are VMs named after the instance UUID, created in the cluster's root resource pool and the configured
(or first accessible) datastore of that cluster, with ``config.instanceUuid`` = the instance UUID (found again
with ``SearchIndex.FindByUuid``), an annotation and extraConfig keys ``stratus.*`` that record the Stratus
instance, so a restarted worker finds its VMs. Images are uploaded once per datastore to
``[<datastore>] stratus_base/<image id>.<disk format>`` through vCenter's ``/folder`` HTTP interface; the
root disk is a new thin disk of ``root_gb`` (minimum 1 GB) and the image it came from is recorded in
extraConfig (``stratus.image_id``, ``stratus.image_path``); see the package docstring for the caveat.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from typing import Any

import requests
from pyVmomi import vim, vmodl

from core.power_state import PowerState
from drivers.base import ComputeDriver, ConsoleEndpoint, DriverError, HostLocalError, HostResources, InstanceInfo, InstanceNotFound, InstanceSpec
from drivers.vmware.session import VSphereSession, fault_message

LOG = logging.getLogger(__name__)

PS = vim.VirtualMachine.PowerState
POWER_STATES = {
    PS.poweredOn: PowerState.RUNNING,
    PS.poweredOff: PowerState.SHUTDOWN,
    PS.suspended: PowerState.SUSPENDED,
}
EXTRA_UUID = "stratus.instance_uuid"
EXTRA_PROJECT = "stratus.project_id"
EXTRA_FLAVOR = "stratus.flavor"
EXTRA_HOST = "stratus.host"
EXTRA_IMAGE_ID = "stratus.image_id"
EXTRA_IMAGE_PATH = "stratus.image_path"
IMAGE_CACHE_DIR = "stratus_base"
GUEST_ID = "otherGuest64"
_PC = vmodl.query.PropertyCollector


def _version_to_int(version: str) -> int:
    """'7.0.3' -> 7000003 (Nova's versionutils.convert_version_to_int)."""
    parts = [int(p) for p in (version or "0").split(".")[:3] if p.isdigit()]
    parts += [0] * (3 - len(parts))
    return parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]


class VMwareDriver(ComputeDriver):
    capabilities = {
        "supports_pause": False,
        "supports_suspend": True,
        "supports_console_output": False,
        "supports_vnc_console": False,
        "supports_spice_console": False,
    }

    def __init__(self, host: str, *, vmware_host: str, port: int, user: str, password: str,
                 protocol: str = "https", cluster: str = "", datastore: str = "", insecure: bool = False,
                 task_timeout: float = 300.0):
        super().__init__(host)
        self.session = VSphereSession(vmware_host, port, user, password, protocol=protocol, insecure=insecure,
                                      task_timeout=task_timeout)
        self.cluster_name = cluster
        self.datastore_name = datastore
        self._inv_lock = threading.Lock()
        self._inv: dict[str, Any] | None = None
        self._inv_generation = -1
        self._vm_cache: dict[str, vim.VirtualMachine] = {}

    # -- plumbing -----------------------------------------------------------------------------------------
    def init_host(self) -> None:
        """Log in and resolve the cluster, resource pool, datastore and datacenter; raises DriverError."""
        self.session.connect()
        self.session.invoke(lambda si: self._inventory(si), "inventory lookup")
        inv = self._inv
        assert inv is not None
        LOG.info("VMware driver for host %s: cluster %s, datastore %s, datacenter %s", self.host,
                 inv["cluster_name"], inv["datastore_name"], inv["datacenter_name"])

    def close(self) -> None:
        self.session.close()

    def _inventory(self, si: vim.ServiceInstance) -> dict[str, Any]:
        """Cluster / pool / datastore / datacenter / VM folder (resolved again after a new login)."""
        with self._inv_lock:
            if self._inv is not None and self._inv_generation == self.session.generation:
                return self._inv
            content = si.content
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ClusterComputeResource], True)
            try:
                clusters = self.session.retrieve(si, [_PC.ObjectSpec(
                    obj=view, skip=True, selectSet=[_PC.TraversalSpec(type=vim.view.ContainerView, path="view")])],
                    [_PC.PropertySpec(type=vim.ClusterComputeResource,
                                      pathSet=["name", "resourcePool", "datastore", "parent"])])
            finally:
                view.DestroyView()
            if not clusters:
                raise DriverError(f"vCenter {self.session.url} has no cluster")
            if self.cluster_name:
                match = [c for c in clusters if c[1].get("name") == self.cluster_name]
                if not match:
                    names = ", ".join(sorted(c[1].get("name", "?") for c in clusters))
                    raise DriverError(f"vCenter cluster {self.cluster_name!r} not found (clusters: {names})")
                cluster, cprops = match[0]
            else:
                cluster, cprops = sorted(clusters, key=lambda c: c[1].get("name", ""))[0]

            datastores = list(cprops.get("datastore") or [])
            if not datastores:
                raise HostLocalError(f"vCenter cluster {cprops.get('name')!r} has no datastore")
            ds_rows = self.session.retrieve(si, [_PC.ObjectSpec(obj=d, skip=False) for d in datastores],
                                            [_PC.PropertySpec(type=vim.Datastore,
                                                              pathSet=["name", "summary.accessible"])])
            ds_rows.sort(key=lambda r: datastores.index(r[0]) if r[0] in datastores else 0)
            if self.datastore_name:
                match = [r for r in ds_rows if r[1].get("name") == self.datastore_name]
                if not match:
                    names = ", ".join(r[1].get("name", "?") for r in ds_rows)
                    raise DriverError(f"datastore {self.datastore_name!r} is not in cluster "
                                      f"{cprops.get('name')!r} (datastores: {names})")
            else:
                match = [r for r in ds_rows if r[1].get("summary.accessible", True)] or ds_rows
            datastore, dsprops = match[0]

            # Walk up to the datacenter, remembering its inventory path (dcPath of /folder URLs).
            parent, names = cprops.get("parent"), []
            datacenter = None
            while parent is not None:
                p = self.session.properties(si, parent, ["name", "parent"])
                if isinstance(parent, vim.Datacenter):
                    datacenter = parent
                    names.append(p.get("name"))
                elif datacenter is not None and p.get("parent") is not None:
                    names.append(p.get("name"))  # folders above the datacenter (not the root folder)
                parent = p.get("parent")
            if datacenter is None:
                raise DriverError(f"cluster {cprops.get('name')!r} is not in a datacenter")
            dc_props = self.session.properties(si, datacenter, ["vmFolder"])
            about = content.about
            self._inv = {
                "cluster": cluster, "cluster_name": cprops.get("name"), "resource_pool": cprops["resourcePool"],
                "datastore": datastore, "datastore_name": dsprops.get("name"),
                "datacenter": datacenter, "datacenter_name": names[0],
                "datacenter_path": "/".join(reversed(names)), "vm_folder": dc_props["vmFolder"],
                "vcenter_uuid": about.instanceUuid or "vcenter",
                "version": about.version, "product": about.name or "VMware vCenter Server",
            }
            self._inv_generation = self.session.generation
            self._vm_cache.clear()
            return self._inv

    def _call(self, action: str, fn):
        """Run fn(si, inv) with re-login and fault translation."""
        return self.session.invoke(lambda si: fn(si, self._inventory(si)), action)

    def _lookup(self, si: vim.ServiceInstance, instance_uuid: str, fresh: bool = False):
        if not fresh and instance_uuid in self._vm_cache:
            return self._vm_cache[instance_uuid]
        ref = si.content.searchIndex.FindByUuid(uuid=instance_uuid, vmSearch=True, instanceUuid=True)
        if ref is None:
            self._vm_cache.pop(instance_uuid, None)
            return None
        self._vm_cache[instance_uuid] = ref
        return ref

    def _with_vm(self, instance_uuid: str, action: str, fn, missing_ok: bool = False):
        """fn(si, inv, vm) for the instance's VM; a stale cached reference is looked up again once."""
        def run(si, inv):
            for attempt in (0, 1):
                vm = self._lookup(si, instance_uuid, fresh=bool(attempt))
                if vm is None:
                    if missing_ok:
                        return None
                    raise InstanceNotFound(instance_uuid)
                try:
                    return fn(si, inv, vm)
                except vmodl.fault.ManagedObjectNotFound:
                    self._vm_cache.pop(instance_uuid, None)
                    if attempt:
                        if missing_ok:
                            return None
                        raise InstanceNotFound(instance_uuid) from None
        return self._call(action, run)

    def _power_state(self, si, vm) -> str:
        return self.session.properties(si, vm, ["runtime.powerState"])["runtime.powerState"]

    def _task(self, task, action: str):
        return self.session.wait_for_task(task, action)

    # -- inventory ----------------------------------------------------------------------------------------
    def _vm_rows(self, si, inv, paths: list[str]) -> list[tuple[Any, dict]]:
        return self.session.retrieve(si, [self._vm_traversal(inv)],
                                     [_PC.PropertySpec(type=vim.VirtualMachine, pathSet=paths)])

    @staticmethod
    def _vm_traversal(inv) -> vmodl.query.PropertyCollector.ObjectSpec:
        """All VMs of the cluster: its root resource pool, child pools (recursively) and their VMs.

        A traversal from the pool rather than a ContainerView: vcsim 0.24 does not add VMs created after a
        view to that view, and a traversal holds no server-side state that a new session would have to rebuild.
        """
        return _PC.ObjectSpec(obj=inv["resource_pool"], skip=True, selectSet=[
            _PC.TraversalSpec(name="rpToRp", type=vim.ResourcePool, path="resourcePool", skip=False,
                              selectSet=[_PC.SelectionSpec(name="rpToRp"), _PC.SelectionSpec(name="rpToVm")]),
            _PC.TraversalSpec(name="rpToVm", type=vim.ResourcePool, path="vm", skip=False),
        ])

    @staticmethod
    def _stratus_uuid(props: dict) -> str | None:
        for opt in props.get("config.extraConfig") or []:
            if opt.key == EXTRA_UUID:
                return str(opt.value)
        return None

    def list_instances(self) -> list[str]:
        def run(si, inv):
            rows = self._vm_rows(si, inv, ["config.extraConfig"])
            out = []
            for vm, props in rows:
                uuid = self._stratus_uuid(props)
                if uuid:
                    out.append(uuid)
                    self._vm_cache[uuid] = vm
            return sorted(out)
        return self._call("list instances", run)

    def get_available_resource(self) -> HostResources:
        def run(si, inv):
            rows = self.session.retrieve(si, [
                _PC.ObjectSpec(obj=inv["cluster"], skip=False),
                _PC.ObjectSpec(obj=inv["datastore"], skip=False),
                self._vm_traversal(inv),
            ], [
                _PC.PropertySpec(type=vim.ClusterComputeResource, pathSet=["summary"]),
                _PC.PropertySpec(type=vim.Datastore, pathSet=["summary.capacity", "summary.freeSpace"]),
                _PC.PropertySpec(type=vim.VirtualMachine,
                                 pathSet=["config.hardware.numCPU", "config.hardware.memoryMB"]),
            ])
            summary, ds, vcpus_used, mem_used = None, {}, 0, 0
            for obj, props in rows:
                if isinstance(obj, vim.ClusterComputeResource):
                    summary = props.get("summary")
                elif isinstance(obj, vim.Datastore):
                    ds = props
                elif isinstance(obj, vim.VirtualMachine):
                    vcpus_used += props.get("config.hardware.numCPU") or 0
                    mem_used += props.get("config.hardware.memoryMB") or 0
            if summary is None:
                raise HostLocalError(f"cluster {inv['cluster_name']!r} summary is unavailable")
            gib = 1 << 30
            capacity, free = ds.get("summary.capacity") or 0, ds.get("summary.freeSpace") or 0
            return HostResources(
                hypervisor_hostname=f"{inv['cluster']._moId}.{inv['vcenter_uuid']}",
                hypervisor_type="VMware vCenter Server",
                hypervisor_version=_version_to_int(inv["version"]),
                vcpus=int(summary.numCpuThreads or 0),
                memory_mb=int((summary.totalMemory or 0) // (1 << 20)),
                local_gb=int(capacity // gib),
                vcpus_used=vcpus_used, memory_mb_used=mem_used,
                local_gb_used=int((capacity - free) // gib),
                host_ip=self.session.host)
        return self._call("get available resource", run)

    # -- disks and images ---------------------------------------------------------------------------------
    @staticmethod
    def _image_file_name(instance: InstanceSpec) -> str:
        image = instance.image
        assert image is not None
        ext = (image.disk_format or "img").lower()
        return f"{IMAGE_CACHE_DIR}/{image.id}.{ext}"

    def _folder_url(self, inv, ds_file: str) -> str:
        query = urllib.parse.urlencode({"dcPath": inv["datacenter_path"], "dsName": inv["datastore_name"]})
        return (f"{self.session.protocol}://{self.session.host}:{self.session.port}/folder/"
                f"{urllib.parse.quote(ds_file)}?{query}")

    def build_disk(self, instance: InstanceSpec) -> None:
        """Upload the image once per datastore to [ds] stratus_base/<image id>.<format> (skip if present)."""
        if instance.image is None:
            return  # blank root disk, made by spawn
        image = instance.image
        path = image.data_path()
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise DriverError(f"image {image.id} data is not readable at {path}: {exc}") from None
        ds_file = self._image_file_name(instance)

        def run(si, inv):
            url = self._folder_url(inv, ds_file)
            verify = self.session.protocol != "https" or not self.session.insecure
            for attempt in (0, 1):
                headers = {"Cookie": self.session.cookie}
                head = requests.head(url, headers=headers, verify=verify, timeout=60)
                if head.status_code == 200 and int(head.headers.get("Content-Length", -1)) == size:
                    LOG.debug("image %s already cached at [%s] %s", image.id, inv["datastore_name"], ds_file)
                    return
                if head.status_code in (401, 403) and attempt == 0:
                    self.session.relogin(si)
                    continue
                with open(path, "rb") as fh:
                    resp = requests.put(url, data=fh, verify=verify, timeout=self.session.task_timeout,
                                        headers={**headers, "Content-Type": "application/octet-stream",
                                                 "Content-Length": str(size)})
                if resp.status_code in (401, 403) and attempt == 0:
                    self.session.relogin(si)
                    continue
                if resp.status_code not in (200, 201, 204):
                    raise HostLocalError(f"uploading image {image.id} to [{inv['datastore_name']}] {ds_file} "
                                         f"failed: HTTP {resp.status_code} {resp.reason}")
                LOG.info("uploaded image %s (%d bytes) to [%s] %s", image.id, size, inv["datastore_name"], ds_file)
                return
        try:
            self._call("image upload", run)
        except requests.RequestException as exc:
            raise HostLocalError(f"uploading image {image.id} failed: {exc}") from None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def _config_spec(self, instance: InstanceSpec, inv) -> vim.vm.ConfigSpec:
        ds = inv["datastore_name"]
        extra = {
            EXTRA_UUID: instance.uuid, EXTRA_PROJECT: instance.project_id, EXTRA_FLAVOR: instance.flavor_name,
            EXTRA_HOST: self.host,
        }
        if instance.image is not None:
            extra[EXTRA_IMAGE_ID] = instance.image.id
            extra[EXTRA_IMAGE_PATH] = f"[{ds}] {self._image_file_name(instance)}"
        controller = vim.vm.device.VirtualDeviceSpec(
            operation=vim.vm.device.VirtualDeviceSpec.Operation.add,
            device=vim.vm.device.VirtualLsiLogicController(
                key=-100, busNumber=0, sharedBus=vim.vm.device.VirtualSCSIController.Sharing.noSharing))
        disk = vim.vm.device.VirtualDeviceSpec(
            operation=vim.vm.device.VirtualDeviceSpec.Operation.add,
            fileOperation=vim.vm.device.VirtualDeviceSpec.FileOperation.create,
            device=vim.vm.device.VirtualDisk(
                key=-101, controllerKey=-100, unitNumber=0,
                capacityInKB=max(1, instance.root_gb) * 1024 * 1024,
                backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    fileName=f"[{ds}]", diskMode="persistent", thinProvisioned=True)))
        return vim.vm.ConfigSpec(
            name=instance.uuid, instanceUuid=instance.uuid, guestId=GUEST_ID,
            numCPUs=instance.vcpus, memoryMB=instance.memory_mb,
            annotation=(f"Stratus instance {instance.uuid}\nname: {instance.name}\n"
                        f"project: {instance.project_id}\nflavor: {instance.flavor_name}"),
            extraConfig=[vim.option.OptionValue(key=k, value=str(v)) for k, v in extra.items()],
            files=vim.vm.FileInfo(vmPathName=f"[{ds}]"),
            deviceChange=[controller, disk])

    def _ensure_on(self, si, vm, action: str, state: str | None = None) -> None:
        if state is None:
            state = self._power_state(si, vm)
        if state == PS.poweredOn:
            return
        try:
            self._task(vm.PowerOnVM_Task(), action)
        except vim.fault.InvalidPowerState:
            if self._power_state(si, vm) != PS.poweredOn:
                raise

    def spawn(self, instance: InstanceSpec) -> None:
        def run(si, inv):
            vm = self._lookup(si, instance.uuid, fresh=True)
            state = None  # unknown: read it
            if vm is None:
                try:
                    vm = self._task(inv["vm_folder"].CreateVM_Task(
                        config=self._config_spec(instance, inv), pool=inv["resource_pool"]), "create VM")
                    state = PS.poweredOff  # a new VM is off: no need to ask
                except vim.fault.DuplicateName:
                    vm = self._lookup(si, instance.uuid, fresh=True)  # a concurrent/retried spawn made it
                    if vm is None:
                        raise
                self._vm_cache[instance.uuid] = vm
                LOG.info("created VM %s (%s) for instance %s", instance.uuid, vm._moId, instance.uuid)
            try:
                self._ensure_on(si, vm, "power on", state)
            except vmodl.MethodFault as exc:
                # leave nothing behind (the VM's disk goes with it; the image cache stays)
                LOG.warning("power on of %s failed (%s); destroying the VM", instance.uuid, fault_message(exc))
                try:
                    self._task(vm.Destroy_Task(), "destroy VM")
                except vmodl.MethodFault:
                    LOG.exception("cleanup of VM %s failed", instance.uuid)
                self._vm_cache.pop(instance.uuid, None)
                raise
        self._call("spawn", run)

    def destroy(self, instance_uuid: str, destroy_disks: bool = True) -> None:
        def run(si, inv, vm):
            state = self._power_state(si, vm)
            if state != PS.poweredOff:
                try:
                    self._task(vm.PowerOffVM_Task(), "power off")
                except vim.fault.InvalidPowerState:
                    pass
            if destroy_disks:
                self._task(vm.Destroy_Task(), "destroy VM")
            else:
                vm.UnregisterVM()
            self._vm_cache.pop(instance_uuid, None)
            LOG.info("destroyed VM of instance %s (disks %s)", instance_uuid,
                     "deleted" if destroy_disks else "kept")
        self._with_vm(instance_uuid, "destroy", run, missing_ok=True)

    def get_info(self, instance_uuid: str) -> InstanceInfo:
        def run(si, inv, vm):
            props = self.session.properties(si, vm, ["runtime.powerState", "config.hardware.numCPU",
                                                     "config.hardware.memoryMB"])
            return InstanceInfo(power_state=POWER_STATES.get(props.get("runtime.powerState"), PowerState.NOSTATE),
                                vcpus=props.get("config.hardware.numCPU") or 0,
                                memory_mb=props.get("config.hardware.memoryMB") or 0)
        return self._with_vm(instance_uuid, "get info", run)

    def power_off(self, instance_uuid: str, timeout: int = 0) -> None:
        def run(si, inv, vm):
            props = self.session.properties(si, vm, ["runtime.powerState", "guest.toolsRunningStatus"])
            state = props.get("runtime.powerState")
            if state == PS.poweredOff:
                return
            if (timeout and state == PS.poweredOn
                    and props.get("guest.toolsRunningStatus") == "guestToolsRunning"):
                try:
                    vm.ShutdownGuest()
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        if self._power_state(si, vm) == PS.poweredOff:
                            return
                        time.sleep(0.5)
                except (vim.fault.ToolsUnavailable, vim.fault.InvalidState, vmodl.fault.NotSupported) as exc:
                    LOG.info("clean shutdown of %s unavailable (%s); powering off", instance_uuid,
                             fault_message(exc))
            try:
                self._task(vm.PowerOffVM_Task(), "power off")
            except vim.fault.InvalidPowerState:
                if self._power_state(si, vm) != PS.poweredOff:
                    raise
        self._with_vm(instance_uuid, "power off", run)

    def power_on(self, instance_uuid: str) -> None:
        self._with_vm(instance_uuid, "power on", lambda si, inv, vm: self._ensure_on(si, vm, "power on"))

    def reboot(self, instance_uuid: str, reboot_type: str = "SOFT") -> None:
        def run(si, inv, vm):
            props = self.session.properties(si, vm, ["runtime.powerState", "guest.toolsRunningStatus"])
            state = props.get("runtime.powerState")
            if state == PS.suspended:
                raise DriverError(f"Instance {instance_uuid} is suspended; resume it before rebooting")
            if state == PS.poweredOff:
                self._ensure_on(si, vm, "power on")
                return
            if reboot_type.upper() == "SOFT" and props.get("guest.toolsRunningStatus") == "guestToolsRunning":
                try:
                    vm.RebootGuest()
                    return
                except (vim.fault.ToolsUnavailable, vim.fault.InvalidState, vmodl.fault.NotSupported,
                        vmodl.fault.MethodNotFound) as exc:
                    LOG.info("guest reboot of %s unavailable (%s); resetting", instance_uuid, fault_message(exc))
            self._task(vm.ResetVM_Task(), "reset")
        self._with_vm(instance_uuid, "reboot", run)

    def suspend(self, instance_uuid: str) -> None:
        def run(si, inv, vm):
            state = self._power_state(si, vm)
            if state == PS.suspended:
                return
            if state != PS.poweredOn:
                raise DriverError(f"Instance {instance_uuid} is {state}; only a running instance can be suspended")
            try:
                self._task(vm.SuspendVM_Task(), "suspend")
            except vim.fault.InvalidPowerState:
                if self._power_state(si, vm) != PS.suspended:
                    raise
        self._with_vm(instance_uuid, "suspend", run)

    def resume(self, instance_uuid: str) -> None:
        def run(si, inv, vm):
            state = self._power_state(si, vm)
            if state == PS.poweredOn:
                return
            if state != PS.suspended:
                raise DriverError(f"Instance {instance_uuid} is {state}; only a suspended instance can be resumed")
            self._ensure_on(si, vm, "resume")
        self._with_vm(instance_uuid, "resume", run)

    def pause(self, instance_uuid: str) -> None:
        raise NotImplementedError("the VMware driver does not support pause")

    def unpause(self, instance_uuid: str) -> None:
        raise NotImplementedError("the VMware driver does not support unpause")

    def get_console_output(self, instance_uuid: str) -> str:
        raise NotImplementedError("the VMware driver does not provide console output")

    def get_console(self, instance_uuid: str, kind: str) -> ConsoleEndpoint:
        raise NotImplementedError("the VMware driver does not provide graphical consoles")

