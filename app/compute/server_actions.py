"""The handlers of the server actions that act on one server in place (reboot, lock, unlock,
os-getConsoleOutput, rescue, unrescue, trigger_crash_dump, rebuild, createImage, restore, forceDelete) and soft
delete. app/compute/actions.py names them by their body key; the conductor checks the state and starts the compute
canvas (tasks/conductor/actions.py)."""
from __future__ import annotations

import secrets

from flask import Response, g, jsonify
from marshmallow import fields, validate
from sqlalchemy import select

from app.compute.boot_request import image_for_boot
from app.compute.instances import get_instance, start_action, writable_instance
from app.compute.metadata_items import check_create_quota, validate_metadata
from app.compute.schemas import (IPv4, IPv6, KeyedMap, LockSchema, RebootSchema, ServerName, StrictSchema,
                                 action_argument, check_no_args, check_version_gated, is_uuid, load)
from app.compute.server_bodies import render
from app.compute.views import base_url
from app.context import RequestContext, current
from app.fields import NovaBoolean
from app.image.snapshots import drop_queued_image, new_snapshot_image
from app.microversion import current as api_version
from app.policy import authorize
from app.policy_names import sub_rule
from core import crypto, states
from core.db import read_session
from core.errors import ApiError, bad_request, conflict, not_found
from core.models import Image, Instance, KeyPair
from core.routing import compute_queue
from core.settings import get_settings
from tasks.messaging import rpc


def start_op(inst: Instance, action: str, values: dict | None = None, params: dict | None = None,
           api_name: str | None = None) -> None:
    ctx = current()
    rpc.call("stratus.conductor.instance_op", {
        "instance_uuid": inst.uuid, "action": action, "request_id": g.request_id, "user_id": ctx.user_id,
        "project_id": ctx.project_id, "values": values or {}, "params": params or {}, "api_name": api_name},
        argsrepr=repr(({"instance_uuid": inst.uuid, "action": action},)))


# --- reboot, lock, unlock, console output --------------------------------------------------------------------------

@action_argument("reboot", RebootSchema)
def reboot(server_id: str, body: dict) -> None:
    start_action(server_id, "reboot_hard" if body["type"].upper() == "HARD" else "reboot")


LOCK_REASON_SINCE = "2.73"


def lock(server_id: str, args: object) -> None:
    """Nova's lock: the owner's project locking an already-locked server changes nothing; otherwise the lock
    records who took it (``owner`` or ``admin``), which decides whether unlock needs unlock_override."""
    ctx = current()
    reason = None
    # Nova's schemas: before 2.73 any argument is taken and ignored; from 2.73 null or {"locked_reason": ...}.
    if args is not None and api_version().matches(LOCK_REASON_SINCE):
        reason = load(LockSchema(), args).get("locked_reason")
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    is_owner = inst.project_id == ctx.project_id
    if inst.locked and is_owner:
        return
    rpc.call("stratus.conductor.update_instance", inst.uuid,
             {"locked": True, "locked_reason": reason, "locked_by": "owner" if is_owner else "admin"})


def expected_locked_by(inst: Instance, ctx: RequestContext) -> bool:
    """Nova's is_expected_locked_by: unlocked, or locked by the caller's side (owner project / admin)."""
    expect = "owner" if inst.project_id == ctx.project_id else "admin"
    return not inst.locked_by or inst.locked_by == expect


def unlock(server_id: str, args: object) -> None:
    ctx = current()
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    if not expected_locked_by(inst, ctx):
        authorize(sub_rule("unlock_override"), inst.project_id)
    rpc.call("stratus.conductor.update_instance", inst.uuid,
             {"locked": False, "locked_reason": None, "locked_by": None})


def console_output(server_id: str, args: object) -> Response:
    ctx = current()
    if args is not None and not isinstance(args, dict):
        raise bad_request(f"Invalid input for field/attribute os-getConsoleOutput. Value: {args!r}. {args!r} is "
                          f"not of type 'object'")
    length = (args or {}).get("length")
    if length is not None:
        try:
            length = int(length)
        except (TypeError, ValueError):
            raise bad_request(f"Invalid input for field/attribute length. Value: {length}.") from None
        if length < -1:
            raise bad_request(f"Invalid input for field/attribute length. Value: {length}.")
    with read_session() as s:
        inst = get_instance(s, server_id, ctx)
    if not inst.host or inst.vm_state == states.BUILDING:
        raise conflict(f"Instance {inst.uuid} is not ready")
    output = rpc.call("stratus.compute.console_output", {"host": inst.host, "instance_uuid": inst.uuid},
                      queue=compute_queue(inst.host))
    if length is not None and length >= 0:
        output = "\n".join(output.splitlines()[-length:]) if length else ""
    return jsonify({"output": output})


# --- rescue / unrescue ---------------------------------------------------------------------------------------------

class RescueSchema(StrictSchema):
    adminPass = fields.String(validate=validate.Length(max=255))
    rescue_image_ref = fields.String()


def rescue(server_id: str, args: object) -> Response:
    body = load(RescueSchema(), args) if args is not None else {}
    inst = writable_instance(server_id)
    params = {}
    if body.get("rescue_image_ref"):
        image_id = body["rescue_image_ref"].rstrip("/").split("/")[-1]
        with read_session() as s:
            if not is_uuid(image_id) or s.get(Image, image_id) is None:
                raise bad_request(f"Image {image_id} could not be found.")
        params["rescue_image_id"] = image_id
    admin_pass = body.get("adminPass") or secrets.token_urlsafe(9)[:12]
    start_op(inst, "rescue", values={"admin_pass_enc": crypto.encrypt(admin_pass)}, params=params)
    return jsonify({"adminPass": admin_pass})


def unrescue(server_id: str, args: object) -> None:
    check_no_args("unrescue", args)
    start_op(writable_instance(server_id), "unrescue")


# --- trigger_crash_dump (2.17) --------------------------------------------------------------------------------------

def trigger_crash_dump(server_id: str, args: object) -> None:
    if not api_version().matches("2.17"):
        raise not_found("The resource could not be found.")
    check_no_args("trigger_crash_dump", args)
    inst = writable_instance(server_id)
    ctx = current()
    rpc.call("stratus.conductor.trigger_crash_dump", {"instance_uuid": inst.uuid, "request_id": g.request_id,
                                                      "user_id": ctx.user_id, "project_id": ctx.project_id})


# --- rebuild -------------------------------------------------------------------------------------------------------

class RebuildSchema(StrictSchema):
    gates = {"description": "2.19", "key_name": "2.54", "user_data": "2.57", "trusted_image_certificates": "2.63",
             "hostname": "2.90"}
    removed = {"personality": "2.57"}
    imageRef = fields.String(required=True)
    name = ServerName()
    adminPass = fields.String(validate=validate.Length(max=255))
    metadata = KeyedMap(fields.String(validate=validate.Length(max=255)))
    preserve_ephemeral = NovaBoolean()
    accessIPv4 = IPv4()
    accessIPv6 = IPv6()
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    key_name = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    user_data = fields.String(allow_none=True)
    hostname = fields.String(validate=validate.Length(min=1, max=255))
    personality = fields.List(fields.Dict())
    trusted_image_certificates = fields.List(fields.String(), allow_none=True)
    OS_DCF_diskConfig = fields.String(data_key="OS-DCF:diskConfig", validate=validate.OneOf(["AUTO", "MANUAL"]))


@action_argument("rebuild", RebuildSchema)
def rebuild(server_id: str, body: dict) -> Response:
    ctx = current()
    check_version_gated(body, RebuildSchema.gates, api_version())
    values: dict = {}
    if "metadata" in body:
        values["metadata_items"] = validate_metadata(body["metadata"])
        check_create_quota(values["metadata_items"])
    inst = writable_instance(server_id)
    with read_session() as s:
        img = image_for_boot(s, body["imageRef"], ctx)
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
    values.update({names[k]: val for k, val in body.items() if k in names})
    if "user_data" in body:
        values["user_data_enc"] = crypto.encrypt(body["user_data"]) if body["user_data"] else None
    start_op(inst, "rebuild", values=values,
           params={"preserve_ephemeral": bool(body.get("preserve_ephemeral", False))})
    v = api_version()
    with read_session() as s:  # Nova's rebuild view: extended attributes from 2.75, key_name from 2.54
        rebuilt = get_instance(s, inst.uuid, ctx)
        server = render(s, [rebuilt], ctx, show=True, extended=v.matches("2.75"), key_name=v.matches("2.54"),
                        admin_user_data=False)[0]
    server["adminPass"] = admin_pass
    if v.matches("2.57"):
        server["user_data"] = crypto.decrypt(rebuilt.user_data_enc)
    return jsonify({"server": server}), 202


# --- createImage ---------------------------------------------------------------------------------------------------

class CreateImageSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    metadata = KeyedMap(fields.String(validate=validate.Length(max=255)))


@action_argument("createImage", CreateImageSchema)
def create_image(server_id: str, body: dict) -> Response:
    metadata = validate_metadata(body.get("metadata") or {})
    inst = writable_instance(server_id)
    # Nova refuses before asking Glance when the state is wrong; the conductor checks again atomically.
    if inst.vm_state not in states.MORE_ACTIONS["snapshot"]["from"] or inst.task_state is not None:
        attr, state = ("task_state", inst.task_state) if inst.task_state else ("vm_state", inst.vm_state)
        raise conflict(f"Cannot 'createImage' instance {inst.uuid} while it is in {attr} {state}")
    image_id = new_snapshot_image(inst, body["name"], metadata, current().user_id)
    try:
        start_op(inst, "snapshot", params={"image_id": image_id}, api_name="createImage")
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
    inst = writable_instance(server_id)
    if inst.vm_state == states.SOFT_DELETED and inst.task_state is None:
        return True
    if not inst.host or inst.vm_state == states.BUILDING:
        return False
    start_op(inst, "soft_delete", api_name="delete")
    return True


def restore(server_id: str, args: object) -> None:
    check_no_args("restore", args)
    start_op(writable_instance(server_id), "restore")


def force_delete(server_id: str, args: object) -> None:
    check_no_args("forceDelete", args)
    inst = writable_instance(server_id)
    if inst.task_state is not None:
        raise conflict(f"Cannot 'forceDelete' instance {inst.uuid} while it is in task_state {inst.task_state}")
    start_action(server_id, "delete")
