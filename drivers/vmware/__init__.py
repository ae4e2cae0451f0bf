"""VMware vCenter driver (pyVmomi). ``make_driver(host, settings)`` is what ``drivers.load_driver`` calls.

One Stratus compute host maps to one vCenter cluster (``vmware_cluster``, default: the first cluster by name).

Images: ``build_disk`` uploads the image file once per datastore to
``[<datastore>] stratus_base/<image id>.<disk_format>`` over vCenter's ``/folder`` HTTP interface (vcsim
supports it too). ``spawn`` then creates a *new thin root disk* of ``root_gb`` (min 1 GB) and records the image
in extraConfig (``stratus.image_id``, ``stratus.image_path``), as Nova's vmwareapi records image metadata; it
does not convert/copy the image into the root disk (that needs a streamOptimized/monolithicSparse VMDK and
``CopyVirtualDisk_Task``; not done yet).
"""
from __future__ import annotations

from core.settings import Settings
from drivers.vmware.driver import VMwareDriver
from drivers.vmware.session import VSphereSession, fault_message

__all__ = ["VMwareDriver", "VSphereSession", "fault_message", "make_driver"]


def make_driver(host: str, settings: Settings) -> VMwareDriver:
    return VMwareDriver(
        host,
        vmware_host=settings.vmware_host, port=settings.vmware_port, user=settings.vmware_user,
        password=settings.vmware_password, protocol=settings.vmware_protocol,
        cluster=settings.vmware_cluster, datastore=settings.vmware_datastore,
        insecure=bool(settings.vmware_insecure), task_timeout=settings.vmware_task_timeout)
