"""The handlers of the server actions that move a server between flavors or hosts: resize, confirmResize,
revertResize, migrate, os-migrateLive, evacuate, shelve, shelveOffload, unshelve (app/compute/actions.py names them
by their body key; the conductor side is tasks/conductor/moves.py)."""
from __future__ import annotations

import secrets

from flask import Response, g, jsonify
from marshmallow import fields, validate

from app.compute.instances import writable_instance
from app.compute.schemas import FQDN_CHARS, StrictSchema, action_argument, check_no_args, load
from app.context import current
from app.fields import NovaBoolean
from app.image.snapshots import drop_queued_image, new_snapshot_image
from app.microversion import current as api_version
from app.policy import authorize
from app.policy_names import sub_rule
from core import crypto, states
from core.errors import ApiError, bad_request, conflict
from core.models import Instance
from core.settings import get_settings
from drivers import supports
from tasks.messaging import rpc


def _request(inst: Instance, action: str, **extra: object) -> dict:
    ctx = current()
    return {"instance_uuid": inst.uuid, "action": action, "request_id": g.request_id, "user_id": ctx.user_id,
            "project_id": ctx.project_id, **extra}


class ResizeSchema(StrictSchema):
    flavorRef = fields.Raw(required=True)
    OS_DCF_diskConfig = fields.String(data_key="OS-DCF:diskConfig", validate=validate.OneOf(["AUTO", "MANUAL"]))


@action_argument("resize", ResizeSchema)
def resize(server_id: str, body: dict) -> None:
    flavor_ref = body["flavorRef"]
    if not isinstance(flavor_ref, (str, int)) or isinstance(flavor_ref, bool) or not str(flavor_ref).strip():
        raise bad_request(f"Invalid input for field/attribute flavorRef. Value: {flavor_ref!r}.")
    inst = writable_instance(server_id)
    rpc.call("stratus.conductor.start_move",
             _request(inst, "resize", flavor_id=str(flavor_ref).rstrip("/").split("/")[-1]))


def confirm_resize(server_id: str, args: object) -> Response:
    check_no_args("confirmResize", args)
    rpc.call("stratus.conductor.confirm_resize", _request(writable_instance(server_id), "confirm_resize"))
    return Response(status=204)


def revert_resize(server_id: str, args: object) -> None:
    check_no_args("revertResize", args)
    rpc.call("stratus.conductor.revert_resize", _request(writable_instance(server_id), "revert_resize"))


class MigrateSchema(StrictSchema):
    host = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))


def migrate(server_id: str, args: object) -> None:
    body = load(MigrateSchema(), args) if args is not None else {}
    if "host" in body and not api_version().matches("2.56"):
        raise bad_request("Additional properties are not allowed ('host' was unexpected)")
    inst = writable_instance(server_id)
    if body.get("host"):
        authorize(sub_rule("migrate_host"), inst.project_id)
    rpc.call("stratus.conductor.start_move", _request(inst, "migrate", host=body.get("host")))


class LiveMigrateSchema(StrictSchema):
    """Nova's migrate_live schemas: booleans are parameter_types.boolean, block_migration may be "auto" from 2.25
    (when disk_over_commit goes), force exists from 2.30 to 2.67; the host is an fqdn or null."""
    gates = {"force": "2.30"}
    removed = {"disk_over_commit": "2.25", "force": "2.68"}
    host = fields.String(required=True, allow_none=True, validate=[
        validate.Length(min=1, max=255),
        validate.Regexp(FQDN_CHARS, error=f"'{{input}}' does not match '{FQDN_CHARS}'")])
    block_migration = NovaBoolean(extra=("auto",), required=True)
    disk_over_commit = NovaBoolean()
    force = NovaBoolean()


@action_argument("os-migrateLive", LiveMigrateSchema)
def live_migrate(server_id: str, body: dict) -> None:
    block = body["block_migration"]
    if block == "auto" and not api_version().matches("2.25"):
        raise bad_request(f"Invalid input for field/attribute block_migration. Value: {block!r}.")
    if "disk_over_commit" in body and api_version().matches("2.25"):
        raise bad_request("Additional properties are not allowed ('disk_over_commit' was unexpected)")
    _check_force(body, "2.30")
    inst = writable_instance(server_id)
    if body.get("host"):
        authorize(sub_rule("migrate_live_host"), inst.project_id)
    # 2.34: the pre-checks (source up, destination found and claimed) run after the 202 (tasks/conductor/live.py)
    # block_migration: True / False, or None for "auto" (block-migrate unless the instance storage is shared)
    rpc.call("stratus.conductor.live_migrate", _request(inst, "live_migrate", host=body.get("host"),
                                                        block_migration=None if block == "auto" else block,
                                                        async_checks=api_version().matches("2.34")))


def _check_force(body: dict, since: str) -> None:
    """``force`` exists from 2.29 (evacuate) / 2.30 (live-migrate) and is gone again from 2.68. Stratus always
    verifies the requested host with the scheduler, so force=true does not skip the filters."""
    v = api_version()
    if "force" in body and (not v.matches(since) or v.matches("2.68")):
        raise bad_request("Additional properties are not allowed ('force' was unexpected)")


class EvacuateSchema(StrictSchema):
    removed = {"onSharedStorage": "2.14", "force": "2.68"}
    gates = {"force": "2.29"}
    host = fields.String(validate=validate.Length(min=1, max=255))
    adminPass = fields.String(validate=validate.Length(max=255))
    onSharedStorage = NovaBoolean()
    force = NovaBoolean()


def evacuate(server_id: str, args: object) -> Response:
    v = api_version()
    body = load(EvacuateSchema(), {"evacuate": args}, root="evacuate")
    if "onSharedStorage" in body and v.matches("2.14"):
        raise bad_request("Additional properties are not allowed ('onSharedStorage' was unexpected)")
    if "onSharedStorage" not in body and not v.matches("2.14"):
        raise bad_request(f"Invalid input for field/attribute evacuate. Value: {args!r}. 'onSharedStorage' is a "
                          f"required property")
    _check_force(body, "2.29")
    inst = writable_instance(server_id)
    admin_pass = body.get("adminPass") or secrets.token_urlsafe(9)[:12]
    rpc.call("stratus.conductor.start_move", _request(inst, "evacuate", host=body.get("host"),
                                                      admin_pass_enc=crypto.encrypt(admin_pass),
                                                      stop_on_destination=v.matches("2.95")),
             argsrepr=repr(({"instance_uuid": inst.uuid, "action": "evacuate", "host": body.get("host")},)))
    if v.matches("2.14"):
        return Response(status=200)
    return jsonify({"adminPass": admin_pass})


SHELVE_FROM = (states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED)


def shelve(server_id: str, args: object) -> None:
    """Nova: a snapshot image ``<name>-shelved`` keeps the disk; unshelve boots from it and deletes it."""
    check_no_args("shelve", args)
    inst = writable_instance(server_id)
    if inst.vm_state not in SHELVE_FROM or inst.task_state is not None:  # no image for a refused request
        attr, state = ("task_state", inst.task_state) if inst.task_state else ("vm_state", inst.vm_state)
        raise conflict(f"Cannot 'shelve' instance {inst.uuid} while it is in {attr} {state}")
    image_id = None
    if supports(get_settings().compute_driver, "snapshot"):
        image_id = new_snapshot_image(inst, f"{inst.display_name}-shelved", {}, current().user_id)
    try:
        rpc.call("stratus.conductor.shelve", _request(inst, "shelve", image_id=image_id))
    except ApiError:
        if image_id:
            drop_queued_image(image_id)
        raise


def shelve_offload(server_id: str, args: object) -> None:
    check_no_args("shelveOffload", args)
    rpc.call("stratus.conductor.shelve", _request(writable_instance(server_id), "shelve_offload"))


class UnshelveSchema(StrictSchema):
    availability_zone = fields.String(allow_none=True)
    host = fields.String(validate=validate.Length(min=1, max=255))


def unshelve(server_id: str, args: object) -> None:
    body = load(UnshelveSchema(), args) if isinstance(args, dict) else {}
    if args is not None and not isinstance(args, dict):
        raise bad_request(f"Invalid input for field/attribute unshelve. Value: {args!r}.")
    if "availability_zone" in body and not api_version().matches("2.77"):
        raise bad_request("Additional properties are not allowed ('availability_zone' was unexpected)")
    if "availability_zone" in body and body["availability_zone"] is None and not api_version().matches("2.91"):
        raise bad_request("Invalid input for field/attribute availability_zone. Value: None. None is not of type "
                          "'string'")
    if "host" in body:
        if not api_version().matches("2.91"):
            raise bad_request("Additional properties are not allowed ('host' was unexpected)")
    inst = writable_instance(server_id)
    if "host" in body:
        authorize(sub_rule("unshelve_to_host"), inst.project_id)
    if inst.vm_state == "shelved":  # not offloaded yet: it starts again on its host
        if body.get("availability_zone") or body.get("host"):
            raise conflict(f"The availability_zone or host parameter is only valid for shelved offloaded "
                           f"servers; instance {inst.uuid} is shelved.")
        rpc.call("stratus.conductor.shelve", _request(inst, "unshelve_on_host"))
    else:
        zone = {"availability_zone": body["availability_zone"]} if "availability_zone" in body else {}
        rpc.call("stratus.conductor.start_move", _request(inst, "unshelve", host=body.get("host"), **zone))
