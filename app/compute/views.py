"""Server and flavor bodies, exactly as Nova shows them at each microversion (2.1 .. 2.96)."""
from __future__ import annotations

import datetime as dt
import hashlib

from flask import request

from app.context import RequestContext
from app.microversion import APIVersion
from core.models import ComputeNode, Flavor, Instance, InstanceFault, Service
from core.settings import get_settings
from core.states import status_of

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


def instance_name(instance_id: int) -> str:
    """Nova's default instance_name_template."""
    return f"instance-{instance_id:08x}"


def api_id(row: Service | ComputeNode, version: APIVersion) -> object:
    """A service's or hypervisor's id as the API shows it: its uuid from 2.53, its integer id before."""
    return row.uuid if version.matches("2.53") else row.id


def server_summary(inst: Instance) -> dict:
    return {"id": inst.uuid, "name": inst.display_name, "links": links("servers", inst.uuid)}


class ServerView:
    """A server's body as one request shows it: what the microversion and the caller's role add is worked out
    once, then applied to each server (a 1,000-server list renders in a loop of plain dict building)."""

    def __init__(self, version: APIVersion, ctx: RequestContext, show: bool = False, extended: bool = True,
                 key_name: bool | None = None, admin_user_data: bool = True):
        """``extended`` False: the body of a PUT or rebuild before 2.75 (Nova's ``show_all_attributes`` off): no
        zone, config drive, usage, extended status and volumes, admin attributes or host status, and plain
        addresses; ``key_name`` then follows its own argument (rebuild shows it from 2.54). A rebuild never shows
        ``OS-EXT-SRV-ATTR:user_data`` (``admin_user_data``): it has ``user_data`` of its own from 2.57."""
        self.admin = ctx.is_admin
        self.extended = extended
        self.key_name = extended if key_name is None else key_name
        self.admin_attrs, self.admin_user_data = ctx.is_admin and extended, admin_user_data
        self.base, self.prefix = base_url(), compute_prefix()
        m = version.matches
        self.flavor_embedded = m("2.47")
        self.admin_2_3 = self.admin and m("2.3")
        self.hostname_2_90 = not self.admin and m("2.90")
        self.locked, self.host_status = m("2.9"), self.admin and m("2.16") and extended
        self.description, self.tags, self.certificates = m("2.19"), m("2.26"), m("2.63")
        self.server_groups, self.locked_reason = show and m("2.71"), m("2.73")
        self.pinned_az = m("2.96") and extended
        self._host_ids: dict[tuple[str, str | None], str] = {}

    def host_id(self, project_id: str, host: str | None) -> str:
        key = (project_id, host)
        if key not in self._host_ids:
            self._host_ids[key] = host_id(project_id, host)
        return self._host_ids[key]

    def flavor(self, inst: Instance) -> dict:
        f = inst.flavor_snapshot or {}
        if not self.flavor_embedded:
            return {"id": f.get("id"), "links": [links("flavors", f.get("id"), self.base, self.prefix)[1]]}
        return {"vcpus": f.get("vcpus"), "ram": f.get("ram"), "disk": f.get("disk"),
                "ephemeral": f.get("ephemeral", 0), "swap": f.get("swap", 0), "original_name": f.get("name"),
                "extra_specs": dict(f.get("extra_specs") or {})}

    def fault(self, fault: InstanceFault | None) -> dict | None:
        if fault is None:
            return None
        body = {"code": fault.code, "created": iso(fault.created_at), "message": fault.message}
        # Nova shows details to admins, and to everyone when the fault is not a 500.
        if self.admin or fault.code != 500:
            body["details"] = fault.details
        return body

    def body(self, inst: Instance, fault: InstanceFault | None = None, host_status: str | None = None,
             addresses: dict | None = None, server_groups: list[str] | None = None,
             tags: list[str] | None = None) -> dict:
        status = status_of(inst.vm_state, inst.task_state)
        base, uuid, image = self.base, inst.uuid, inst.image_ref
        body: dict = {
            "id": uuid,
            "name": inst.display_name,
            "status": status,
            "tenant_id": inst.project_id,
            "user_id": inst.user_id,
            "metadata": dict(inst.metadata_items or {}),
            "hostId": self.host_id(inst.project_id, inst.host),
            "image": {"id": image, "links": [{"rel": "bookmark", "href": f"{base}/images/{image}"}]} if image else "",
            "flavor": self.flavor(inst),
            "created": iso(inst.created_at),
            "updated": iso(inst.updated_at),
            "addresses": (addresses or {}) if self.extended else plain_addresses(addresses),
            "accessIPv4": inst.access_ip_v4 or "",
            "accessIPv6": inst.access_ip_v6 or "",
            "links": links("servers", uuid, base, self.prefix),
            "OS-DCF:diskConfig": "MANUAL",
        }
        if status in _PROGRESS_STATUSES:
            body["progress"] = inst.progress or 0
        if self.extended:
            body["OS-EXT-AZ:availability_zone"] = inst.availability_zone or ""
            body["config_drive"] = "True" if inst.config_drive in ("True", "true", "1") else ""
        if self.key_name:
            body["key_name"] = inst.key_name
        if self.extended:
            body["OS-SRV-USG:launched_at"] = iso_usec(inst.launched_at)
            body["OS-SRV-USG:terminated_at"] = iso_usec(inst.terminated_at)
            body["OS-EXT-STS:task_state"] = inst.task_state
            body["OS-EXT-STS:vm_state"] = inst.vm_state
            body["OS-EXT-STS:power_state"] = inst.power_state
            body["os-extended-volumes:volumes_attached"] = []
        if self.admin_attrs:
            body["OS-EXT-SRV-ATTR:host"] = inst.host
            body["OS-EXT-SRV-ATTR:instance_name"] = instance_name(inst.id)
            body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = inst.node
            if self.admin_2_3:
                body["OS-EXT-SRV-ATTR:reservation_id"] = inst.reservation_id
                body["OS-EXT-SRV-ATTR:launch_index"] = inst.launch_index
                body["OS-EXT-SRV-ATTR:hostname"] = inst.hostname
                body["OS-EXT-SRV-ATTR:kernel_id"] = ""
                body["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
                body["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
                if self.admin_user_data:
                    body["OS-EXT-SRV-ATTR:user_data"] = None
        elif self.hostname_2_90:
            body["OS-EXT-SRV-ATTR:hostname"] = inst.hostname
        if self.locked:
            body["locked"] = bool(inst.locked)
        if self.host_status:
            body["host_status"] = host_status or ""
        if self.description:
            body["description"] = inst.display_description
        if self.tags:
            body["tags"] = list(tags or [])
        if self.certificates:
            body["trusted_image_certificates"] = None
        if self.server_groups:
            body["server_groups"] = list(server_groups or [])
        if self.locked_reason:
            body["locked_reason"] = inst.locked_reason
        if self.pinned_az:
            body["pinned_availability_zone"] = inst.requested_availability_zone
        fault_body = self.fault(fault) if inst.vm_state in ("error", "deleted") else None
        if fault_body:
            body["fault"] = fault_body
        return body


def plain_addresses(addresses: dict | None) -> dict:
    """Nova's addresses without the OS-EXT-IPS extensions (``extend_address`` off)."""
    return {net: [{"version": a["version"], "addr": a["addr"]} for a in ips] for net, ips in (addresses or {}).items()}


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
