"""More server actions (rescue, unrescue, rebuild, createImage, trigger_crash_dump, restore, forceDelete), soft
delete, and /servers/{id}/diagnostics. Actions register in servers.EXTRA_ACTIONS; the conductor checks the
state and starts the compute canvas (tasks/conductor/actions.py)."""
from __future__ import annotations

import secrets
import uuid as uuidlib

from flask import Blueprint, Response, g, jsonify
from marshmallow import fields, validate
from sqlalchemy import select

from app.compute import servers
from app.compute.schemas import ServerName, StrictSchema, check_version_gated, is_uuid, load
from app.compute.server_metadata import check_create_quota, validate_metadata
from app.compute.views import base_url
from app.context import current
from app.microversion import current as api_version
from app.policy import enforce, recheck
from core import crypto, states
from core.db import read_session, write_session
from core.errors import ApiError, bad_request, conflict, not_found
from core.models import Image, Instance, KeyPair, utcnow
from core.routing import compute_queue
from core.settings import get_settings
from tasks.messaging import rpc

bp = Blueprint("server_actions", __name__)


def _writable_instance(server_id: str) -> Instance:
    """The caller's instance for a state-changing action: 404 if not visible, 403 for readers, 409 if locked."""
    ctx = current()
    with read_session() as s:
        inst = servers.get_instance(s, server_id, ctx)
    recheck(inst.project_id)
    if inst.locked and not ctx.is_admin:
        raise conflict(f"Instance {inst.uuid} is locked")
    return inst


def _start(inst: Instance, action: str, values: dict | None = None, params: dict | None = None,
           api_name: str | None = None) -> None:
    ctx = current()
    rpc.call("stratus.conductor.instance_op", {
        "instance_uuid": inst.uuid, "action": action, "request_id": g.request_id, "user_id": ctx.user_id,
        "project_id": ctx.project_id, "values": values or {}, "params": params or {}, "api_name": api_name},
        argsrepr=repr(({"instance_uuid": inst.uuid, "action": action},)))


def _no_args(name: str, args: object) -> None:
    if args not in (None, {}):
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {args!r}. {args!r} is not of type "
                          f"'null'")


# --- rescue / unrescue ---------------------------------------------------------------------------------------------

class RescueSchema(StrictSchema):
    adminPass = fields.String(validate=validate.Length(max=255))
    rescue_image_ref = fields.String()


def _rescue(server_id: str, args: object) -> Response:
    body = load(RescueSchema(), args) if args is not None else {}
    inst = _writable_instance(server_id)
    params = {}
    if body.get("rescue_image_ref"):
        image_id = body["rescue_image_ref"].rstrip("/").split("/")[-1]
        with read_session() as s:
            if not is_uuid(image_id) or s.get(Image, image_id) is None:
                raise bad_request(f"Image {image_id} could not be found.")
        params["rescue_image_id"] = image_id
    admin_pass = body.get("adminPass") or secrets.token_urlsafe(9)[:12]
    _start(inst, "rescue", values={"admin_pass_enc": crypto.encrypt(admin_pass)}, params=params)
    return jsonify({"adminPass": admin_pass})


def _unrescue(server_id: str, args: object) -> None:
    _no_args("unrescue", args)
    _start(_writable_instance(server_id), "unrescue")


# --- trigger_crash_dump (2.17) --------------------------------------------------------------------------------------

def _trigger_crash_dump(server_id: str, args: object) -> None:
    if not api_version().matches("2.17"):
        raise not_found("The resource could not be found.")
    _no_args("trigger_crash_dump", args)
    inst = _writable_instance(server_id)
    ctx = current()
    rpc.call("stratus.conductor.trigger_crash_dump", {"instance_uuid": inst.uuid, "request_id": g.request_id,
                                                      "user_id": ctx.user_id, "project_id": ctx.project_id})


# --- rebuild -------------------------------------------------------------------------------------------------------

class RebuildSchema(StrictSchema):
    imageRef = fields.String(required=True)
    name = ServerName()
    adminPass = fields.String(validate=validate.Length(max=255))
    metadata = fields.Raw()
    preserve_ephemeral = fields.Boolean(truthy={True}, falsy={False})
    accessIPv4 = fields.IPv4()
    accessIPv6 = fields.IPv6()
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    key_name = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    user_data = fields.String(allow_none=True)
    hostname = fields.String(validate=validate.Length(min=1, max=255))
    personality = fields.List(fields.Dict())
    trusted_image_certificates = fields.List(fields.String(), allow_none=True)
    OS_DCF_diskConfig = fields.String(data_key="OS-DCF:diskConfig", validate=validate.OneOf(["AUTO", "MANUAL"]))


def _rebuild(server_id: str, args: object) -> Response:
    ctx = current()
    body = load(RebuildSchema(), {"rebuild": args}, root="rebuild")
    check_version_gated(body, {"description": "2.19", "key_name": "2.54", "user_data": "2.57",
                               "trusted_image_certificates": "2.63", "hostname": "2.90"})
    values: dict = {}
    if "metadata" in body:
        values["metadata_items"] = validate_metadata(body["metadata"])
        check_create_quota(values["metadata_items"])
    inst = _writable_instance(server_id)
    with read_session() as s:
        img = servers._image_for_boot(s, body["imageRef"], ctx)
        flavor = inst.flavor_snapshot or {}
        if (flavor.get("ram") or 0) < (img.min_ram or 0):
            raise bad_request("Flavor's memory is too small for requested image.")
        if flavor.get("disk") and flavor["disk"] < (img.min_disk or 0):
            raise bad_request("Flavor's disk is too small for requested image.")
        if body.get("key_name"):
            kp = s.scalars(select(KeyPair).where(KeyPair.user_id == inst.user_id,
                                                 KeyPair.name == body["key_name"])).first()
            if kp is None:
                raise bad_request("Invalid key_name provided.")
            values.update(key_name=kp.name, key_data=kp.public_key)
        elif "key_name" in body:  # null unsets the key pair (2.54)
            values.update(key_name=None, key_data=None)
    admin_pass = body.get("adminPass") or secrets.token_urlsafe(9)[:12]
    values.update(image_ref=img.id, admin_pass_enc=crypto.encrypt(admin_pass))
    names = {"name": "display_name", "description": "display_description", "hostname": "hostname",
             "accessIPv4": "access_ip_v4", "accessIPv6": "access_ip_v6"}
    values.update({names[k]: (str(val) if k.startswith("access") else val) for k, val in body.items()
                   if k in names})
    if "user_data" in body:
        values["user_data_enc"] = crypto.encrypt(body["user_data"]) if body["user_data"] else None
    _start(inst, "rebuild", values=values,
           params={"preserve_ephemeral": bool(body.get("preserve_ephemeral", False))})
    with read_session() as s:
        server = servers.render(s, [servers.get_instance(s, inst.uuid, ctx)], ctx, show=True)[0]
    server["adminPass"] = admin_pass
    return jsonify({"server": server}), 202


# --- createImage ---------------------------------------------------------------------------------------------------

class CreateImageSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    metadata = fields.Raw()


def new_snapshot_image(inst: Instance, name: str, metadata: dict) -> str:
    """A queued private image for a snapshot of ``inst`` (createImage, shelve), as Nova asks Glance for one."""
    image_id = str(uuidlib.uuid4())
    now = utcnow()
    with write_session() as s:  # the image service's own table
        base = s.get(Image, inst.image_ref)
        inherited = {k: v for k, v in ((base.properties or {}) if base else {}).items()
                     if k not in ("instance_uuid", "image_type", "base_image_ref")}
        s.add(Image(id=image_id, name=name, status="queued", visibility="private", protected=False,
                    owner=inst.project_id, disk_format=base.disk_format if base else "raw",
                    container_format=base.container_format if base else "bare",
                    min_disk=(inst.flavor_snapshot or {}).get("disk") or 0, min_ram=base.min_ram if base else 0,
                    properties={**inherited, **metadata, "instance_uuid": inst.uuid, "image_type": "snapshot",
                                "base_image_ref": inst.image_ref, "user_id": current().user_id},
                    tags=[], created_at=now, updated_at=now))
    return image_id


def drop_queued_image(image_id: str) -> None:
    """The snapshot's action was refused: its image never gets data."""
    with write_session() as s:
        s.query(Image).filter(Image.id == image_id, Image.status == "queued").delete()


def _create_image(server_id: str, args: object) -> Response:
    body = load(CreateImageSchema(), {"createImage": args}, root="createImage")
    metadata = validate_metadata(body.get("metadata") or {})
    inst = _writable_instance(server_id)
    # Nova refuses before asking Glance when the state is wrong; the conductor checks again atomically.
    if inst.vm_state not in states.MORE_ACTIONS["snapshot"]["from"] or inst.task_state is not None:
        attr, state = ("task_state", inst.task_state) if inst.task_state else ("vm_state", inst.vm_state)
        raise conflict(f"Cannot 'createImage' instance {inst.uuid} while it is in {attr} {state}")
    image_id = new_snapshot_image(inst, body["name"], metadata)
    try:
        _start(inst, "snapshot", params={"image_id": image_id}, api_name="createImage")
    except ApiError:
        drop_queued_image(image_id)
        raise
    if api_version().matches("2.45"):
        return jsonify({"image_id": image_id}), 202
    resp = Response(status=202)
    resp.headers["Location"] = f"{base_url()}/image/v2/images/{image_id}"
    return resp


# --- soft delete, restore, forceDelete -----------------------------------------------------------------------------

def soft_delete(server_id: str) -> bool:
    """DELETE with reclaim_instance_interval > 0: SOFT_DELETED instead of deleted. False when the server must be
    deleted at once (never launched on a host, still building)."""
    if get_settings().reclaim_instance_interval <= 0:
        return False
    inst = _writable_instance(server_id)
    if inst.vm_state == states.SOFT_DELETED and inst.task_state is None:
        return True
    if not inst.host or inst.vm_state == states.BUILDING:
        return False
    _start(inst, "soft_delete", api_name="delete")
    return True


def _restore(server_id: str, args: object) -> None:
    _no_args("restore", args)
    _start(_writable_instance(server_id), "restore")


def _force_delete(server_id: str, args: object) -> None:
    _no_args("forceDelete", args)
    inst = _writable_instance(server_id)
    if inst.task_state is not None:
        raise conflict(f"Cannot 'forceDelete' instance {inst.uuid} while it is in task_state {inst.task_state}")
    servers._action(server_id, "delete")


servers.EXTRA_ACTIONS.update({"rescue": _rescue, "unrescue": _unrescue, "trigger_crash_dump": _trigger_crash_dump,
                              "rebuild": _rebuild, "createImage": _create_image, "restore": _restore,
                              "forceDelete": _force_delete})


# --- diagnostics ---------------------------------------------------------------------------------------------------

def _legacy_diagnostics(d: dict) -> dict:
    """Before 2.48 Nova returns the driver's own flat keys; these are libvirt's."""
    out: dict = {f"cpu{c['id']}_time": c.get("time") for c in d.get("cpu_details", [])}
    out["memory"] = (d.get("memory_details") or {}).get("maximum", 0) * 1024
    for i, disk in enumerate(d.get("disk_details", [])):
        name = f"vd{chr(ord('a') + i)}"
        out.update({f"{name}_read": disk["read_bytes"], f"{name}_read_req": disk["read_requests"],
                    f"{name}_write": disk["write_bytes"], f"{name}_write_req": disk["write_requests"],
                    f"{name}_errors": disk["errors_count"]})
    for i, nic in enumerate(d.get("nic_details", [])):
        for key in ("rx_octets", "rx_errors", "rx_drop", "rx_packets", "tx_octets", "tx_errors", "tx_drop",
                    "tx_packets"):
            out[f"vnet{i}_{key.replace('_octets', '')}"] = nic[key]
    return out


@bp.get("/servers/<server_id>/diagnostics")
@enforce("admin_api")
def diagnostics(server_id: str):
    with read_session() as s:
        inst = servers.get_instance(s, server_id, current())
    if not inst.host or inst.vm_state == states.BUILDING:
        raise conflict(f"Instance {inst.uuid} is not ready")
    result = rpc.call("stratus.compute.diagnostics", {"host": inst.host, "instance_uuid": inst.uuid},
                      queue=compute_queue(inst.host))
    return jsonify(result if api_version().matches("2.48") else _legacy_diagnostics(result))
