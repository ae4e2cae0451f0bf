"""Server and flavor bodies, exactly as Nova shows them at each microversion (2.1 .. 2.96)."""
from __future__ import annotations

import datetime as dt
import hashlib

from flask import request

from app.context import RequestContext
from app.microversion import APIVersion
from app.models import Flavor, Instance, InstanceFault
from app.settings import get_settings
from tasks.states import status_of

_PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def iso_usec(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def base_url() -> str:
    return get_settings().public_url.rstrip("/")


def compute_prefix() -> str:
    return "/v2" if request.path.startswith("/v2/") else "/v2.1"


def links(collection: str, ident: str | int, base: str | None = None, prefix: str | None = None) -> list[dict]:
    base, prefix = base or base_url(), prefix or compute_prefix()
    return [{"rel": "self", "href": f"{base}{prefix}/{collection}/{ident}"},
            {"rel": "bookmark", "href": f"{base}/{collection}/{ident}"}]


def host_id(project_id: str, host: str | None) -> str:
    return hashlib.sha224((project_id + host).encode()).hexdigest() if host else ""


def server_summary(inst: Instance) -> dict:
    return {"id": inst.uuid, "name": inst.display_name, "links": links("servers", inst.uuid)}


def _flavor_ref(inst: Instance, version: APIVersion, ctx: RequestContext, base: str | None = None) -> dict:
    f = inst.flavor_snapshot or {}
    if not version.matches("2.47"):
        return {"id": f.get("id"), "links": [links("flavors", f.get("id"), base)[1]]}
    body = {"vcpus": f.get("vcpus"), "ram": f.get("ram"), "disk": f.get("disk"), "ephemeral": f.get("ephemeral", 0),
            "swap": f.get("swap", 0), "original_name": f.get("name")}
    body["extra_specs"] = dict(f.get("extra_specs") or {})
    return body


def _fault(fault: InstanceFault | None, ctx: RequestContext) -> dict | None:
    if fault is None:
        return None
    body = {"code": fault.code, "created": iso(fault.created_at), "message": fault.message}
    # Nova shows details to admins, and to everyone when the fault is not a 500.
    if ctx.is_admin or fault.code != 500:
        body["details"] = fault.details
    return body


def server_detail(inst: Instance, version: APIVersion, ctx: RequestContext, fault: InstanceFault | None = None,
                  host_status: str | None = None, show: bool = False, addresses: dict | None = None,
                  server_groups: list[str] | None = None, tags: list[str] | None = None) -> dict:
    status = status_of(inst.vm_state, inst.task_state)
    base, prefix = base_url(), compute_prefix()  # once per server, not once per link
    body: dict = {
        "id": inst.uuid,
        "name": inst.display_name,
        "status": status,
        "tenant_id": inst.project_id,
        "user_id": inst.user_id,
        "metadata": dict(inst.metadata_items or {}),
        "hostId": host_id(inst.project_id, inst.host),
        "image": ({"id": inst.image_ref, "links": [{"rel": "bookmark", "href": f"{base}/images/{inst.image_ref}"}]}
                  if inst.image_ref else ""),
        "flavor": _flavor_ref(inst, version, ctx, base),
        "created": iso(inst.created_at),
        "updated": iso(inst.updated_at),
        "addresses": addresses or {},
        "accessIPv4": inst.access_ip_v4 or "",
        "accessIPv6": inst.access_ip_v6 or "",
        "links": links("servers", inst.uuid, base, prefix),
        "OS-DCF:diskConfig": "MANUAL",
    }
    if status in _PROGRESS_STATUSES:
        body["progress"] = inst.progress or 0
    body["OS-EXT-AZ:availability_zone"] = inst.availability_zone or ""
    body["config_drive"] = "True" if inst.config_drive in ("True", "true", "1") else ""
    body["key_name"] = inst.key_name
    body["OS-SRV-USG:launched_at"] = iso_usec(inst.launched_at)
    body["OS-SRV-USG:terminated_at"] = iso_usec(inst.terminated_at)
    body["OS-EXT-STS:task_state"] = inst.task_state
    body["OS-EXT-STS:vm_state"] = inst.vm_state
    body["OS-EXT-STS:power_state"] = inst.power_state
    body["os-extended-volumes:volumes_attached"] = []
    if ctx.is_admin:
        body["OS-EXT-SRV-ATTR:host"] = inst.host
        body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{inst.id:08x}"
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = inst.node
        if version.matches("2.3"):
            body["OS-EXT-SRV-ATTR:reservation_id"] = inst.reservation_id
            body["OS-EXT-SRV-ATTR:launch_index"] = inst.launch_index
            body["OS-EXT-SRV-ATTR:hostname"] = inst.hostname
            body["OS-EXT-SRV-ATTR:kernel_id"] = ""
            body["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
            body["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
            body["OS-EXT-SRV-ATTR:user_data"] = None
    elif version.matches("2.90"):
        body["OS-EXT-SRV-ATTR:hostname"] = inst.hostname
    if version.matches("2.9"):
        body["locked"] = bool(inst.locked)
    if version.matches("2.16") and ctx.is_admin:
        body["host_status"] = host_status or ""
    if version.matches("2.19"):
        body["description"] = inst.display_description
    if version.matches("2.26"):
        body["tags"] = list(tags or [])
    if version.matches("2.63"):
        body["trusted_image_certificates"] = None
    if version.matches("2.71") and show:
        body["server_groups"] = list(server_groups or [])
    if version.matches("2.73"):
        body["locked_reason"] = inst.locked_reason
    if version.matches("2.96"):
        body["pinned_availability_zone"] = inst.requested_availability_zone
    fault_body = _fault(fault, ctx) if inst.vm_state in ("error", "deleted") else None
    if fault_body:
        body["fault"] = fault_body
    return body


def flavor_summary(f: Flavor, version: APIVersion) -> dict:
    body = {"id": f.flavorid, "links": links("flavors", f.flavorid), "name": f.name}
    if version.matches("2.55"):
        body["description"] = f.description
    return body


def flavor_detail(f: Flavor, version: APIVersion) -> dict:
    body = {"id": f.flavorid, "name": f.name, "ram": f.memory_mb, "disk": f.root_gb, "swap":
            (f.swap if version.matches("2.75") else (f.swap or "")), "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
            "OS-FLV-DISABLED:disabled": bool(f.disabled), "vcpus": f.vcpus,
            "os-flavor-access:is_public": bool(f.is_public), "rxtx_factor": f.rxtx_factor,
            "links": links("flavors", f.flavorid)}
    if version.matches("2.55"):
        body["description"] = f.description
    if version.matches("2.61"):
        body["extra_specs"] = dict(f.extra_specs or {})
    return body
