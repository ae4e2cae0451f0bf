"""Compute side of the further server actions (queue ``compute.<host>``): driver calls only, no DB at all: what
a step needs (the instance spec, a rescue image, a snapshot's disk format) is in its message, put there by the
conductor (tasks/conductor/actions.compute_needs, tasks/conductor/moves.py)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from core import states
from core.power_state import PowerState
from core.settings import get_settings
from drivers import shared_storage
from drivers.base import ComputeDriver, DriverError, DriverUnavailable, InstanceNotFound, InstanceSpec, LiveMigrationAborted
from tasks.common import StopCanvas, step
from tasks.compute import driver_for, driver_reply, forget, image_spec, instance_spec, track
from tasks import image_cache, image_service, snapshot_upload
from tasks.messaging.celery_app import celery


def _rescue(drv: ComputeDriver, ctx: dict) -> dict:
    drv.rescue(instance_spec(ctx), image_spec(ctx.get("rescue_image")))
    return {}


def _rebuild(drv: ComputeDriver, ctx: dict) -> dict:
    """Nova's default rebuild: destroy the guest, build the disk from the (new) image, spawn, and stop it again
    when it was stopped. preserve_ephemeral has no effect: Stratus guests have no ephemeral disk."""
    spec = instance_spec(ctx)
    drv.destroy(spec.uuid, destroy_disks=True)
    drv.build_disk(spec)
    drv.spawn(spec)
    if ctx.get("prior_vm_state") == states.STOPPED:
        drv.power_off(spec.uuid, timeout=0)
    return {}


def _snapshot(drv: ComputeDriver, ctx: dict) -> dict:
    disk_format = ctx.get("image_disk_format")
    if disk_format is None:  # the conductor found no image row when the action started
        raise StopCanvas("the snapshot's image was deleted before the snapshot")
    stream = drv.snapshot(ctx["instance_uuid"], disk_format=disk_format)
    try:
        # Through the Image API (issue 25: no shared disk): it stores the data and makes the image active; a
        # 404/409 means the image was deleted meanwhile (or a redelivered step finds it uploaded): the conductor's
        # finish step tells which.
        data = snapshot_upload.HashingReader(stream)
        image_service.client().upload(ctx["image_id"], data)
    finally:
        stream.close()
    return {"image_size": data.size, "image_md5": data.md5.hexdigest(), "image_sha256": data.sha256.hexdigest()}


_OPS: dict[str, Callable[[ComputeDriver, dict], dict]] = {
    "rescue": _rescue,
    "unrescue": lambda d, c: (d.unrescue(c["instance_uuid"]), {})[1],
    "rebuild": _rebuild,
    "snapshot": _snapshot,
    "backup": _snapshot,
    # Nova's default soft_delete / restore are a power off / power on of the guest.
    "soft_delete": lambda d, c: (d.power_off(c["instance_uuid"], timeout=get_settings().shutdown_timeout), {})[1],
    "restore": lambda d, c: (d.power_on(c["instance_uuid"]), {})[1],
    "trigger_crash_dump": lambda d, c: (d.trigger_crash_dump(c["instance_uuid"]), {})[1],
}


@celery.task(name="stratus.compute.instance_op")
@step
def instance_op(ctx: dict) -> dict:
    drv = driver_for(ctx["host"])
    try:
        extra = _OPS[ctx["action"]](drv, ctx)
    except NotImplementedError:
        raise DriverError(f"The {get_settings().compute_driver} compute driver does not support "
                          f"{ctx['action']}.") from None
    try:
        power = drv.get_info(ctx["instance_uuid"]).power_state
        track(ctx["host"], ctx["instance_uuid"], power)
    except InstanceNotFound:
        power = PowerState.NOSTATE
    out = {**ctx, **extra, "power_state": power}
    out.pop("spec", None)  # the conductor's next step needs the IDs only
    return out


_POWER_NAMES = {PowerState.RUNNING: "running", PowerState.PAUSED: "paused", PowerState.SHUTDOWN: "shutdown",
                PowerState.CRASHED: "crashed", PowerState.SUSPENDED: "suspended"}


@celery.task(name="stratus.compute.diagnostics")
def diagnostics(ctx: dict) -> dict:
    """API-facing: the guest's diagnostics (the API waits for this reply)."""
    drv = driver_for(ctx["host"])

    def running_guest_diagnostics() -> dict:
        state = drv.get_info(ctx["instance_uuid"]).power_state
        if state != PowerState.RUNNING:
            raise DriverError(f"Cannot 'get_diagnostics' instance {ctx['instance_uuid']} while it is in power state "
                              f"{_POWER_NAMES.get(state, 'pending')}")
        return drv.get_diagnostics(ctx["instance_uuid"])
    return driver_reply("diagnostics", running_guest_diagnostics)


# --- moves (tasks/conductor/moves.py): one step per ``ctx["ops"]`` entry, each on the host it names ---------

def _spec_with_flavor(ctx: dict) -> InstanceSpec:
    spec = instance_spec(ctx)
    flavor = ctx["new_flavor"]
    return dataclasses.replace(spec, vcpus=flavor["vcpus"], memory_mb=flavor["ram"], root_gb=flavor["disk"],
                               flavor_name=flavor["name"], flavor_id=flavor["id"],
                               extra_specs=dict(flavor.get("extra_specs") or {}))


def _spawn_here(drv: ComputeDriver, ctx: dict) -> None:
    """Evacuate / unshelve from offloaded: build the guest on this host from the instance's image (unshelve:
    from the snapshot shelve took, ``boot_image_id``)."""
    spec = instance_spec(ctx)
    drv.build_disk(spec)
    drv.spawn(spec)
    if not ctx.get("power_on", True):
        drv.power_off(spec.uuid, timeout=0)


def _shelve(drv: ComputeDriver, ctx: dict, offload: bool) -> dict:
    """Nova's shelve: power off, snapshot the disk into the ``<name>-shelved`` image, destroy when offloading."""
    try:
        drv.power_off(ctx["instance_uuid"], timeout=get_settings().shutdown_timeout)
    except InstanceNotFound:
        if not offload:
            raise
        return _offloaded_before(ctx)
    extra: dict = {}
    if ctx.get("image_id"):
        try:
            extra = _snapshot(drv, ctx)
        except StopCanvas:  # the image was deleted meanwhile: shelve without one (unshelve uses the base image)
            extra = {"image_id": None}
    if offload:
        drv.destroy(ctx["instance_uuid"], destroy_disks=True)
    return extra


def _offloaded_before(ctx: dict) -> dict:
    """The guest is gone: an earlier run of this step offloaded it and its finish was lost (the canvas was sent
    again, tasks/conductor/resume.py). Its snapshot counts if that run's upload made the image active (the Image
    API says; the conductor's finish checks the same); else the server is shelved without one."""
    image_id = ctx.get("image_id")
    if not image_id:
        return {"image_id": None}
    try:
        active = image_service.client().show(image_id).get("status") == "active"
    except image_service.ImageNotFound:
        active = False
    return {} if active else {"image_id": None}


def _resize_source(drv: ComputeDriver, ctx: dict) -> None:
    """Power off and keep the guest for a revert; for a move to another host by a driver whose disk travels
    through the Image API, upload the stopped guest's disk (standalone) as the migration's transfer image."""
    drv.migrate_disk_and_power_off(ctx["instance_uuid"])
    if ctx.get("transfer_image_id") and ctx["dest"] != ctx["host"]:
        stream = drv.snapshot(ctx["instance_uuid"], disk_format="qcow2")  # the guest is off: copied as it is
        try:
            # 409: a redelivered step finds the image uploaded already; 404: the move ended meanwhile
            status = image_service.client().upload(ctx["transfer_image_id"], snapshot_upload.HashingReader(stream))
        finally:
            stream.close()
        if status == 404:
            raise DriverError(f"The transfer image {ctx['transfer_image_id']} of the migration is gone")


def _resize_dest(drv: ComputeDriver, ctx: dict) -> None:
    spec = _spec_with_flavor(ctx)
    if ctx.get("transfer_image_id") and ctx["source"] != ctx["host"]:
        drv.receive_migrated_disk(spec.uuid, lambda: image_cache.host_cache().fetch(ctx["transfer_image_id"]))
    drv.finish_migration(spec, power_on=ctx["power_on"])


def _check_live_migration_source(drv: ComputeDriver, ctx: dict) -> dict:
    """On the source, after the destination wrote its shared storage test file: block-migrate or not."""
    return {"block_migration": shared_storage.check_source(drv, ctx.get("block_migration"), ctx["dest_check"])}


def _pre_live_migration(drv: ComputeDriver, ctx: dict) -> dict:
    """On the destination, before the copy: its migrate data goes to the source's step in the message (with
    the source's block-migration choice). The test file the source did not see goes here."""
    shared_storage.remove_test_file(drv.instance_storage_dir(), ctx["dest_check"].get("shared_storage_test_file"))
    data = drv.pre_live_migration(instance_spec(ctx)) or {}
    return {"migrate_data": {**data, "block_migration": ctx["block_migration"]}}


def _live_migrate(drv: ComputeDriver, ctx: dict) -> dict:
    """Tells the conductor once the copy runs, so it shows ``running`` only while the driver can abort or force
    it; a migration cancelled while it was queued is aborted by the conductor then (live_migration_running)."""
    try:
        arrived = drv.live_migrate(ctx["instance_uuid"], ctx["dest"], on_started=lambda: celery.send_task(
            "stratus.conductor.live_migration_running", args=(ctx,)), migrate_data=ctx.get("migrate_data"))
    except LiveMigrationAborted:
        return {"aborted": True}
    forget(ctx["instance_uuid"], ctx["host"])  # no longer this host's guest: its power sync stops looking
    return {"migrate_data": arrived or {}}


def _post_live_migration(drv: ComputeDriver, ctx: dict) -> None:
    """On the destination after the copy: finish the arrived guest, or after an abort remove what the
    pre-step made (Nova's post_live_migration_at_destination / rollback_live_migration_at_destination)."""
    if ctx.get("aborted"):
        drv.rollback_live_migration_at_destination(ctx["instance_uuid"],
                                                   destroy_disks=ctx.get("block_migration") is not False)
    else:
        drv.post_live_migration_at_destination(instance_spec(ctx), ctx.get("migrate_data"))


# Ops return None, or values for the context (the shelve snapshot's size and checksums).
_MOVE_OPS: dict[str, Callable[[ComputeDriver, dict], dict | None]] = {
    "resize_source": _resize_source,
    "resize_dest": _resize_dest,
    "confirm_source": lambda d, c: d.confirm_migration(c["instance_uuid"], dest_host=c.get("dest") or ""),
    "revert_dest": lambda d, c: d.destroy(c["instance_uuid"], destroy_disks=True),
    "revert_source": lambda d, c: d.finish_revert_migration(c["instance_uuid"], power_on=c["power_on"]),
    "check_live_migration_destination": lambda d, c: {"dest_check": shared_storage.check_destination(d)},
    "check_live_migration_source": _check_live_migration_source,
    "pre_live_migration": _pre_live_migration,
    "live_migrate": _live_migrate,
    "post_live_migration": _post_live_migration,
    "spawn_here": _spawn_here,
    "shelve": lambda d, c: _shelve(d, c, offload=False),
    "shelve_offload": lambda d, c: _shelve(d, c, offload=True),
    "offload": lambda d, c: d.destroy(c["instance_uuid"], destroy_disks=True),
    "power_on": lambda d, c: d.power_on(c["instance_uuid"]),
}


@celery.task(name="stratus.compute.move_op")
@step
def move_op(ctx: dict) -> dict:
    (op, host), rest = ctx["ops"][0], ctx["ops"][1:]
    try:
        extra = _MOVE_OPS[op](driver_for(host), ctx)
    except NotImplementedError:
        raise DriverError(f"The {get_settings().compute_driver} compute driver does not support "
                          f"{op.replace('_', ' ')}.") from None
    extra = extra if isinstance(extra, dict) else {}
    if extra.get("aborted"):
        final_host = host
    elif ctx.get("aborted"):  # a step after an aborted live migration: the guest stayed on the source
        final_host = ctx["source"]
    else:
        final_host = ctx.get("final_host") or host
    if final_host == host:
        try:
            power = driver_for(host).get_info(ctx["instance_uuid"]).power_state
        except InstanceNotFound:
            power = PowerState.NOSTATE
    else:  # another host's worker (a later step) says; this one may not serve that host
        power = ctx.get("power_state", PowerState.NOSTATE)
    if not rest:  # the guest's home is final_host now: only that host's power sync looks at it
        forget(ctx["instance_uuid"])
        if power != PowerState.NOSTATE and final_host == host:
            track(final_host, ctx["instance_uuid"], power)
    out = {**ctx, **extra, "ops": rest, "host": rest[0][1] if rest else host, "power_state": power}
    if not rest:
        out.pop("spec", None)
    return out


@celery.task(name="stratus.compute.live_migration_control")
def live_migration_control(ctx: dict) -> dict:
    """Abort or force-complete the live migration running on this (source) host. A refusal (no migration of the
    guest runs here any more) becomes the action's failed event, not an instance fault: the move goes on."""
    drv = driver_for(ctx["host"])
    call = {"live_migration_abort": drv.live_migration_abort,
            "live_migration_force_complete": drv.live_migration_force_complete}[ctx["action"]]
    try:
        call(ctx["instance_uuid"])
    except NotImplementedError:
        return {**ctx, "error": f"The {get_settings().compute_driver} compute driver does not support "
                                f"{ctx['action'].replace('_', ' ')}."}
    except DriverUnavailable:
        raise  # retried with backoff
    except DriverError as exc:
        return {**ctx, "error": str(exc)}
    return {**ctx, "error": None}
