"""A server create's boot request, built as Nova's compute/api.py builds it before it asks the conductor: the
loaded ``POST /servers`` body checked for the microversion, and resolved against the database (image, flavor, key
pair, availability zone, networks, server group, requested host, the quota pre-checks) into the argument of
``stratus.conductor.create_instances``.

Flask-free: the caller passes the body, the scheduler hints, the request context, the microversion and the
policy check (``authorize(rule, project)``, which raises 403), so it runs and is tested without a request.
"""
from __future__ import annotations

import dataclasses
import secrets
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.compute import device_tags, instance_tags, metadata_items
from app.compute.schemas import ServerCreateSchema, check_version_gated, is_uuid
from app.compute.visible_flavors import visible_to
from app.policy_names import sub_rule
from core import crypto, image_access, network, quota
from core.db import plain_rows, read_session
from core.errors import ApiError, bad_request
from core.host_zones import effective_zones
from core.models import ComputeNode, Flavor, Image, InstanceGroup, KeyPair

if TYPE_CHECKING:
    from app.context import RequestContext
    from app.microversion import APIVersion

Authorize = Callable[[str, str | None], None]  # a policy check: rule name, target project; 403 if refused

# Fields newer than 2.1, and the microversion that brought each.
CREATE_GATES = ServerCreateSchema.gates
SCHEDULER_HINTS = ("OS-SCH-HNT:scheduler_hints", "os:scheduler_hints")

# What a boot or rebuild checks of its image, read as plain columns (no ORM object per request).
_BOOT_IMAGE_QUERY = select(Image.id, Image.visibility, Image.owner, Image.status, Image.min_ram,
                           Image.min_disk).where(Image.id == bindparam("image_id"))


@dataclasses.dataclass(frozen=True)
class BootRequest:
    """The conductor's create_instances argument (secrets encrypted) and the admin password the answer shows."""
    request: dict
    admin_pass: str

    @property
    def reservation_id(self) -> str:
        return self.request["reservation_id"]

    def redacted(self) -> dict:
        """The request as Flower and the logs show it: no encrypted secret."""
        return {k: ("<redacted>" if k.endswith("_enc") and v else v) for k, v in self.request.items()}


def scheduler_hints(raw: dict) -> dict:
    """The hints of a create body (Nova reads ``OS-SCH-HNT:scheduler_hints``, else ``os:scheduler_hints``)."""
    return raw.get(SCHEDULER_HINTS[0], raw.get(SCHEDULER_HINTS[1], {}))


def build(body: dict, hints: dict, ctx: RequestContext, v: APIVersion, authorize: Authorize) -> BootRequest:
    """The boot request of a create ``body`` (loaded with ServerCreateSchema); Nova's 400/403/409 otherwise."""
    check_version_gated(body, CREATE_GATES, v)
    metadata_items.check_create_quota(body.get("metadata"))
    tags = instance_tags.parse_create_tags(body)
    networks = requested_networks(body, v)
    check_security_groups(body)
    device_tags.check_network_tags(networks, v)
    root_tag = device_tags.root_device_tag(body.get("block_device_mapping_v2") or [], v)
    _check_block_devices(body)
    if "host" in body or "hypervisor_hostname" in body:
        authorize(sub_rule("requested_destination"), ctx.project_id)
    min_count, max_count = body.get("min_count", 1), body.get("max_count", body.get("min_count", 1))
    if min_count > max_count:
        raise bad_request("min_count must be <= max_count")
    if max_count > 1 and "hostname" in body:
        raise bad_request("Cannot request a hostname with multiple instances")
    image_ref = body.get("imageRef") or next((b.get("uuid") for b in body.get("block_device_mapping_v2") or []
                                              if b.get("source_type") == "image"), "")
    if not image_ref:
        raise bad_request("Missing imageRef attribute")
    with read_session() as s:
        img = image_for_boot(s, image_ref, ctx)
        flavor = _flavor_for(s, body["flavorRef"], img, ctx)
        key_data = _key_data(s, body.get("key_name"), ctx)
        az, forced = _zone(s, body.get("availability_zone"))
        # Nothing below can refuse one server without metadata or files (the conductor reserves its quota).
        if body.get("metadata") or body.get("personality") or max_count > 1:
            limits = quota.project_limits(s, ctx.project_id)
            _check_request_quotas(limits, body)
            max_count = _instances_that_fit(s, ctx.project_id, limits, flavor, min_count, max_count)
        group_uuid = _group_hint(s, hints, ctx)
        if forced != (None, None):  # the older "zone:host:node" form, admin-only (Nova's forced_host policy)
            authorize(sub_rule("forced_host"), ctx.project_id)
            if "host" in body or "hypervisor_hostname" in body:
                raise bad_request("The availability_zone form zone:host:node and host / hypervisor_hostname are "
                                  "mutually exclusive.")
        requested_host = _requested_host(s, body.get("host", forced[0]), body.get("hypervisor_hostname", forced[1]))
    admin_pass = body.get("adminPass") or secrets.token_urlsafe(9)[:12]
    count = max_count
    return BootRequest({
        "request_id": ctx.request_id, "project_id": ctx.project_id, "user_id": ctx.user_id,
        "uuids": [str(uuidlib.uuid4()) for _ in range(count)], "count": count, "min_count": min_count,
        "name": body["name"],
        "description": body.get("description"), "hostname": body.get("hostname"), "image_id": img.id,
        "flavor_id": flavor.flavorid, "key_name": body.get("key_name"), "key_data": key_data,
        "availability_zone": az or None, "metadata": body.get("metadata") or {}, "networks": networks,
        "config_drive": "True" if body.get("config_drive") else "",
        "scheduler_hints": hints, "access_ip_v4": body.get("accessIPv4"), "access_ip_v6": body.get("accessIPv6"),
        "reservation_id": "r-" + secrets.token_hex(4), "group_uuid": group_uuid, "tags": tags,
        "requested_host": requested_host, "root_device_tag": root_tag,
        # Secrets travel encrypted and are redacted from Flower and logs by argsrepr.
        "user_data_enc": crypto.encrypt(body.get("user_data")), "admin_pass_enc": crypto.encrypt(admin_pass),
    }, admin_pass)


def ref_id(ref: object) -> str:
    """The id a reference names: the reference itself, or the last part of its URL."""
    return str(ref).rstrip("/").split("/")[-1]


def requested_networks(body: dict, v: APIVersion) -> object:
    """``networks``: "auto" or "none" (required from 2.37), or a list naming the built-in network."""
    nets = body.get("networks")
    if v.matches("2.37"):
        if nets is None:
            raise bad_request(f"Invalid input for field/attribute server. Value: {body!r}. 'networks' is a "
                              f"required property")
        if isinstance(nets, str):
            if nets not in ("auto", "none"):
                raise bad_request(f"Invalid input for field/attribute networks. Value: {nets}. '{nets}' is not "
                                  f"one of ['none', 'auto']")
            return nets
    if nets is None:
        return "auto"
    if not isinstance(nets, list):
        raise bad_request(f"Invalid input for field/attribute networks. Value: {nets!r}. {nets!r} is not of "
                          f"type 'array'")
    for net in nets:
        if not isinstance(net, dict) or set(net) - {"uuid", "port", "fixed_ip", "tag"}:
            raise bad_request(f"Invalid input for field/attribute networks. Value: {nets!r}.")
        if "uuid" in net and not is_uuid(net["uuid"]):
            raise bad_request(f"Bad networks format: network uuid is not in proper format ({net['uuid']})")
        if "port" in net and net["port"]:
            raise bad_request(f"Port {net['port']} could not be found.")
        if net.get("uuid") != network.builtin().id:
            raise bad_request(f"Network {net.get('uuid')} could not be found.")
        if net.get("fixed_ip"):
            raise bad_request("Requesting a specific fixed IP is not supported.")
    if len(nets) > 1:
        raise bad_request("Only one NIC per server is supported: the built-in network.")
    return nets


def check_security_groups(body: dict) -> None:
    """``security_groups``: Stratus's Networking API has no security-group extension, so, as Nova on such a
    Neutron, ``default`` is dropped (Nova leaves it to Neutron's port default) and any other name is not found."""
    for group in body.get("security_groups") or []:
        name = group.get("name") if isinstance(group, dict) else None
        if name and name != "default":
            raise bad_request(f"Unable to find security_group with name or id '{name}'")


def _check_block_devices(body: dict) -> None:
    if body.get("block_device_mapping") or body.get("block_device_mapping_v2"):
        bdms = body.get("block_device_mapping_v2") or []
        image_bdm = [b for b in bdms if b.get("source_type") == "image" and b.get("destination_type") == "local"]
        if len(bdms) != len(image_bdm):
            raise bad_request("Block device mappings other than a local image disk are not supported: Stratus has "
                              "no volume service.")


def image_for_boot(s: Session, image_ref: str, ctx: RequestContext) -> Any:
    """The image's row (id, visibility, owner, status, min_ram, min_disk) if the caller may boot it; else 400."""
    image_id = ref_id(image_ref)
    if not is_uuid(image_id):
        raise bad_request("Invalid imageRef provided.")
    img = plain_rows(s, _BOOT_IMAGE_QUERY, {"image_id": image_id}).first()
    # As Nova asks Glance for the image with the caller's token: a shared image is there for its member projects.
    shared_with = img is not None and img.visibility == "shared" and img.owner != ctx.project_id \
        and not ctx.is_admin
    status = image_access.member_status(s, img.id, ctx.project_id) if shared_with else None
    if img is None or not image_access.visible(img.visibility, img.owner, ctx.project_id, ctx.is_admin, status):
        raise bad_request("Can not find requested image")
    if img.status != "active":  # a deactivated image too (Nova's ImageNotActive)
        raise bad_request(f"Image {image_id} is not active.")
    return img


def _flavor_for(s: Session, flavor_ref: object, img: Any, ctx: RequestContext) -> Any:
    """The flavor's row (flavorid, vcpus, memory_mb, root_gb) if the caller may use it and the image fits."""
    query = select(Flavor.flavorid, Flavor.vcpus, Flavor.memory_mb, Flavor.root_gb).where(
        Flavor.flavorid == ref_id(flavor_ref), Flavor.disabled.is_(False))
    if not ctx.is_admin:  # a private flavor only for the projects given access (Nova)
        query = query.where(visible_to(ctx.project_id))
    flavor = plain_rows(s, query).first()
    if flavor is None:
        raise bad_request("Invalid flavorRef provided.")
    if flavor.memory_mb < (img.min_ram or 0):
        raise bad_request("Flavor's memory is too small for requested image.")
    if flavor.root_gb and flavor.root_gb < (img.min_disk or 0):
        raise bad_request("Flavor's disk is too small for requested image.")
    return flavor


def _key_data(s: Session, key_name: str | None, ctx: RequestContext) -> str | None:
    """The public key of the caller's key pair ``key_name``, if one is asked for."""
    if not key_name:
        return None
    kp = s.scalars(select(KeyPair).where(KeyPair.user_id == ctx.user_id, KeyPair.name == key_name)).first()
    if kp is None:
        raise bad_request("Invalid key_name provided.")
    return kp.public_key


def _zone(s: Session, requested: str | None) -> tuple[str | None, tuple[str | None, str | None]]:
    """The availability zone asked for (400 if no host is in it) and the forced (host, node) of the older
    ``zone:host:node`` form."""
    if not requested:
        return requested, (None, None)
    az, _, forced_at = requested.partition(":")
    forced_host, _, forced_node = forced_at.partition(":")
    if az not in set(effective_zones(s).values()):  # aggregate zones included
        raise bad_request("The requested availability zone is not available")
    return az, (forced_host or None, forced_node or None)


def _group_hint(s: Session, hints: dict, ctx: RequestContext) -> str | None:
    """The server group named by the ``group`` scheduler hint, if the caller may use it (Nova: 400 otherwise)."""
    if "group" not in hints:
        return None
    hint = hints["group"]
    if not isinstance(hint, str) or not is_uuid(hint):
        raise bad_request(f"Invalid input for field/attribute group. Value: {hint}. {hint!r} is not a 'uuid'")
    query = select(InstanceGroup.uuid).where(InstanceGroup.uuid == hint)
    if not ctx.is_admin:
        query = query.where(InstanceGroup.project_id == ctx.project_id)
    group = s.scalar(query)
    if group is None:
        raise bad_request(f"Instance group {hint} could not be found.")
    return group


def _requested_host(s: Session, host: str | None, node: str | None) -> str | None:
    """2.74: the compute host named by ``host`` and/or ``hypervisor_hostname`` (400 when there is none)."""
    if host is None and node is None:
        return None
    query = select(ComputeNode.host)
    if host is not None:
        query = query.where(ComputeNode.host == host)
    if node is not None:
        query = query.where(ComputeNode.hypervisor_hostname == node)
    found = s.scalars(query).first()
    if found is None:
        raise bad_request(f"Compute host {host if node is None else node} could not be found.")
    return found


def _check_request_quotas(limits: dict[str, int], body: dict) -> None:
    """Quotas that limit one request: metadata items and (before 2.57) personality files; 403 like Nova."""
    try:
        quota.check_metadata_items(limits, len(body.get("metadata") or {}))
        quota.check_injected_files(limits, body.get("personality") or [])
    except quota.OverQuota as exc:
        raise ApiError(403, exc.message) from None
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _instances_that_fit(s: Session, project_id: str, limits: dict[str, int], flavor: Any, min_count: int,
                        max_count: int) -> int:
    """Nova's multi-create arithmetic on the usage seen now: 403 up front for what the conductor's reservation
    must refuse, and no request is built for more servers than the quota leaves room for. A single server is
    left to the conductor's reservation, which refuses it with the same 403 (one read less per boot)."""
    if max_count == 1:
        return 1
    try:
        return quota.instances_allowed(limits, quota.usage(s, project_id),
                                       flavor.vcpus, flavor.memory_mb, min_count, max_count)
    except quota.OverQuota as exc:
        raise ApiError(403, exc.message) from None
