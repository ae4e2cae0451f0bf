"""Compute tasks (queue ``compute.<host>``): thin wrappers that call the host's driver.

One worker process may serve several hosts (many fake hosts for scale tests); the task's context names the
host, and the worker keeps one driver object per host. Compute workers read the DB but never write it.
"""
from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import String, bindparam, select

from core import metadata_docs, metadata_query, states
from core.db import plain_rows, read_session
from core.image_store import path_for as image_path
from core.models import Image, Instance
from core.network import builtin as builtin_network
from core.power_state import PowerState
from core.settings import get_settings
from drivers import load_driver
from drivers.base import ComputeDriver, DriverError, ImageSpec, InstanceNotFound, InstanceSpec
from tasks.common import StopCanvas, step
from tasks.messaging.celery_app import celery
from tasks.messaging.liveness import consumer_alive
from tasks.reconcile import InstanceRow, Plan, move_hosts, plan

LOG = logging.getLogger(__name__)
_drivers: dict[str, ComputeDriver] = {}
_drivers_lock = threading.Lock()


def driver_for(host: str) -> ComputeDriver:
    with _drivers_lock:
        drv = _drivers.get(host)
        if drv is None:
            drv = load_driver(get_settings().compute_driver, host, get_settings())
            drv.init_host()
            _drivers[host] = drv
        return drv


# An image's columns a driver's ImageSpec is made of.
_IMAGE_COLUMNS = (Image.id, Image.disk_format, Image.container_format, Image.size, Image.checksum, Image.properties)


def _image_spec_of(s, image_id: str, disk_format: str | None, container_format: str | None, size: int | None,
                   checksum: str | None, properties: dict | None) -> ImageSpec:
    """An ImageSpec from the values of ``_IMAGE_COLUMNS`` (a kernel or ramdisk it names is read)."""
    props = dict(properties or {})
    return ImageSpec(id=image_id, disk_format=disk_format, container_format=container_format, size=size,
                     checksum=checksum, properties=props, path=str(image_path(image_id)),
                     kernel=image_spec(s, props.get("kernel_id")), ramdisk=image_spec(s, props.get("ramdisk_id")))


def image_spec(s, image_id: str | None) -> ImageSpec | None:
    """What the driver needs of an image (None without an id); DriverError when the image is gone."""
    if not image_id:
        return None
    row = s.execute(select(*_IMAGE_COLUMNS).where(Image.id == image_id)).first()
    if row is None:
        raise DriverError(f"Image {image_id} could not be found.")
    return _image_spec_of(s, *row)


def _expect_task_state(found: Any, expected: str | None) -> None:
    """End the canvas unless the live instance (a row with ``task_state``, or None: deleted) is in ``expected``."""
    if found is None:
        raise StopCanvas("instance was deleted")
    if expected is not None and found.task_state != expected:
        raise StopCanvas(f"instance is {found.task_state}, not {expected}")


# Beyond its metadata's columns, what a driver's spec takes from the instance, and its boot image (outer-joined:
# its absence is told by the image's own columns being NULL): its own image, or the bound ``image_id``.
_SPEC_COLUMNS = (Instance.task_state, Instance.user_id, Instance.vcpus, Instance.memory_mb, Instance.root_gb,
                 Instance.config_drive, Instance.root_device_tag,
                 *(c.label(f"image_{c.key}") for c in _IMAGE_COLUMNS))
_SPEC_QUERY = {other: metadata_query.live_instance_query(*_SPEC_COLUMNS, joins=((Image, Image.id == (
    bindparam("image_id", type_=String) if other else Instance.image_ref)),)) for other in (False, True)}


def instance_spec(uuid: str, expect_task_state: str | None = None, image_id: str | None = None) -> InstanceSpec:
    """The driver's view of the instance, read in one statement with its network, password and image (the same
    row the metadata service builds from); ``image_id`` boots it from another image than its own (unshelve)."""
    query, params = _SPEC_QUERY[bool(image_id)], {"uuid": uuid, "image_id": image_id}
    with read_session() as s:
        row = plain_rows(s, query, params).first()
        _expect_task_state(row, expect_task_state)
        md = metadata_query.from_row(row)
        image = None
        if image_id or row.image_ref:
            if row.image_id is None:
                raise DriverError(f"Image {image_id or row.image_ref} could not be found.")
            image = _image_spec_of(s, *(getattr(row, f"image_{c.key}") for c in _IMAGE_COLUMNS))
        flavor = row.flavor_snapshot or {}
        return InstanceSpec(uuid=row.uuid, name=row.display_name, hostname=row.hostname,
                            project_id=row.project_id, user_id=row.user_id, vcpus=row.vcpus,
                            memory_mb=row.memory_mb, root_gb=row.root_gb, flavor_name=flavor.get("name", ""),
                            flavor_id=flavor.get("id", ""), image=image,
                            key_data=row.key_data, metadata=dict(row.metadata_items or {}),
                            extra_specs=dict(flavor.get("extra_specs") or {}), network=_network_of(md),
                            config_drive_files=md.config_drive_files() if _wants_config_drive(row) else None,
                            root_device_tag=row.root_device_tag)


def _wants_config_drive(inst: Any) -> bool:
    return str(inst.config_drive or "").lower() in ("true", "1", "yes")


def _network_of(md: metadata_docs.InstanceMetadata) -> dict | None:
    if not md.fixed_ip:
        return None
    info = builtin_network()
    prefixlen = info.prefixlen if md.fixed_ip["network_id"] == info.id else \
        ipaddress.ip_network(md.fixed_ip["cidr"], strict=False).prefixlen
    return {**md.fixed_ip, "prefixlen": prefixlen, "bridge": info.bridge}


def _cleanup_after_failure(host: str, uuid: str) -> None:
    try:
        driver_for(host).destroy(uuid, destroy_disks=True)
    except Exception:  # the original failure is what matters; log this one
        LOG.exception("cleanup of %s on %s failed", uuid, host)


# What build_disk read, for the spawn step that follows it on the same host and process: Nova reads the instance
# once for its whole build, and between the two steps only the task_state can move (a delete), which spawn reads
# again. A spawn that finds nothing here (another process, a redelivery) reads everything.
_BOOT_SPECS: OrderedDict[tuple[str, str], InstanceSpec] = OrderedDict()
_BOOT_SPECS_MAX = 1024
_boot_specs_lock = threading.Lock()


_TASK_STATE_QUERY = select(Instance.task_state).where(Instance.uuid == bindparam("uuid", type_=String),
                                                       Instance.deleted == 0)


def _boot_spec(ctx: dict, call: str) -> InstanceSpec:
    key = (ctx["instance_uuid"], ctx["host"])
    with _boot_specs_lock:
        spec = _BOOT_SPECS.pop(key, None) if call == "spawn" else None
    if spec is None:
        return instance_spec(key[0], states.SPAWNING)
    with read_session() as s:
        _expect_task_state(plain_rows(s, _TASK_STATE_QUERY, {"uuid": key[0]}).first(), states.SPAWNING)
    return spec


def _keep_boot_spec(ctx: dict, spec: InstanceSpec) -> None:
    with _boot_specs_lock:
        _BOOT_SPECS[(ctx["instance_uuid"], ctx["host"])] = spec
        while len(_BOOT_SPECS) > _BOOT_SPECS_MAX:
            _BOOT_SPECS.popitem(last=False)


def _build_step(ctx: dict, call: str) -> dict:
    """Run one driver step of a boot; on failure remove what the step left, so a reschedule starts clean.
    After spawn, a guest with a tagged NIC or root disk also reports where the driver put them: finish_boot
    stores that for the metadata service (Nova's spawn saves instance.device_metadata); a few small dicts."""
    spec = _boot_spec(ctx, call)
    driver = driver_for(ctx["host"])
    try:
        getattr(driver, call)(spec)
        if call == "spawn" and (spec.root_device_tag or (spec.network or {}).get("tag")):
            ctx = {**ctx, "device_metadata": driver.device_metadata(spec)}
    except Exception:
        _cleanup_after_failure(ctx["host"], spec.uuid)
        raise
    if call == "build_disk":
        _keep_boot_spec(ctx, spec)
    return ctx


@celery.task(name="stratus.compute.build_disk")
@step
def build_disk(ctx: dict) -> dict:
    return _build_step(ctx, "build_disk")


@celery.task(name="stratus.compute.spawn")
@step
def spawn(ctx: dict) -> dict:
    return _build_step(ctx, "spawn")


_POWER_CALLS = {
    "stop": lambda d, u: d.power_off(u, timeout=get_settings().shutdown_timeout),
    "start": lambda d, u: d.power_on(u),
    "reboot": lambda d, u: d.reboot(u, "SOFT"),
    "reboot_hard": lambda d, u: d.reboot(u, "HARD"),
    "pause": lambda d, u: d.pause(u),
    "unpause": lambda d, u: d.unpause(u),
    "suspend": lambda d, u: d.suspend(u),
    "resume": lambda d, u: d.resume(u),
}


@celery.task(name="stratus.compute.power_action")
@step
def power_action(ctx: dict) -> dict:
    drv = driver_for(ctx["host"])
    try:
        _POWER_CALLS[ctx["action"]](drv, ctx["instance_uuid"])
    except NotImplementedError:
        raise DriverError(f"The {get_settings().compute_driver} driver does not support {ctx['action']}.") from None
    return {**ctx, "power_state": drv.get_info(ctx["instance_uuid"]).power_state}


@celery.task(name="stratus.compute.terminate")
@step
def terminate(ctx: dict) -> dict:
    driver_for(ctx["host"]).destroy(ctx["instance_uuid"], destroy_disks=True)
    return ctx


def driver_reply(what: str, call: Callable[[], Any]) -> dict:
    """An API-facing driver query as an RPC reply: {"ok": result}, or 404 (no such guest), 501 (the driver cannot
    do ``what``), 409 (the guest cannot now)."""
    try:
        return {"ok": call()}
    except InstanceNotFound as exc:
        return {"error": {"code": 404, "message": str(exc)}}
    except NotImplementedError:
        return {"error": {"code": 501, "message": f"The {get_settings().compute_driver} compute driver does not "
                                                  f"support {what}."}}
    except DriverError as exc:
        return {"error": {"code": 409, "message": str(exc)}}


@celery.task(name="stratus.compute.console_output", autoretry_for=())
def console_output(ctx: dict) -> dict:
    """API-facing: return the guest's console log (the API waits for this reply)."""
    return driver_reply("console output", lambda: driver_for(ctx["host"]).get_console_output(ctx["instance_uuid"]))


@celery.task(name="stratus.compute.host_uptime", autoretry_for=())
def host_uptime(host: str) -> dict:
    """API-facing: the host's ``uptime`` line (GET /os-hypervisors/{id}/uptime; the show view from 2.88)."""
    return driver_reply("host uptime", lambda: driver_for(host).get_host_uptime())


@celery.task(name="stratus.compute.get_console", autoretry_for=())
def get_console(ctx: dict) -> dict:
    """API-facing: where a console proxy must connect for the guest's ``ctx["kind"]`` ("vnc" | "spice")."""
    kind = ctx["kind"]
    drv = driver_for(ctx["host"])
    if not drv.capabilities.get(f"supports_{kind}_console"):
        return {"error": {"code": 501, "message": f"The {get_settings().compute_driver} compute driver does not "
                                                  f"support {kind} consoles."}}

    def endpoint() -> dict:
        found = drv.get_console(ctx["instance_uuid"], kind)
        return {"host": found.host, "port": found.port}
    return driver_reply(f"{kind} consoles", endpoint)


@celery.task(name="stratus.compute.sync_power_states", ignore_result=True)
def sync_power_states(ctx: dict) -> None:
    """Tell the conductor about guests whose power state changed behind Stratus's back.

    One task covers every host this worker serves (``ctx["hosts"]``; routed by ``ctx["host"]``), with one
    DB read for all of them, so many fake hosts in one process do not mean many tasks per interval.
    """
    hosts = ctx.get("hosts") or [ctx["host"]]
    with read_session() as s:
        rows = s.execute(select(Instance.uuid, Instance.power_state, Instance.host).where(
            Instance.host.in_(hosts), Instance.deleted == 0, Instance.task_state.is_(None))).all()
    changes: dict[str, list] = {}
    for uuid, db_power, host in rows:
        try:
            power = driver_for(host).get_info(uuid).power_state
        except InstanceNotFound:
            power = PowerState.NOSTATE
        except DriverError as exc:
            LOG.warning("power state of %s on %s unknown: %s", uuid, host, exc)
            continue
        if power != db_power:
            changes.setdefault(host, []).append([uuid, power])
    for host, host_changes in changes.items():
        celery.send_task("stratus.conductor.sync_power_states", args=(host, host_changes), queue="conductor")


# --- worker lifecycle ----------------------------------------------------------------------------------------------

def reconcile_host(host: str) -> Plan:
    """At worker start: adopt the guests the DB knows (power sync), report the ones it expects but the driver
    lacks (the conductor sets them to ERROR), and destroy the ones the DB deleted or placed on another host."""
    drv = driver_for(host)
    guests, disks = set(drv.list_instances()), set(drv.list_disks())
    with read_session() as s:
        moving = move_hosts(s, guests | disks)
        rows = [InstanceRow(u, h, bool(d), vm, ts, moving.get(u, ())) for u, h, d, vm, ts in s.execute(
            select(Instance.uuid, Instance.host, Instance.deleted, Instance.vm_state, Instance.task_state).where(
                ((Instance.host == host) & (Instance.deleted == 0)) | Instance.uuid.in_(guests | disks)))]
    todo = plan(host, guests, disks, rows)
    for uuid in todo.orphans:
        LOG.warning("reconcile %s: destroying orphan %s (deleted in the DB, or placed on another host)", host, uuid)
        drv.destroy(uuid, destroy_disks=True)
    for uuid in todo.unknown:
        LOG.warning("reconcile %s: guest %s is unknown to this cloud's database; left alone", host, uuid)
    if todo.missing:
        LOG.error("reconcile %s: %d instance(s) missing from the hypervisor: %s", host, len(todo.missing),
                  todo.missing)
        celery.send_task("stratus.conductor.instances_missing", args=(host, todo.missing), queue="conductor")
    if todo.adopt:
        sync_power_states.apply_async(args=({"host": host, "hosts": [host]},))
    LOG.info("reconcile %s: %d adopted, %d missing, %d orphan(s) destroyed, %d unknown", host, len(todo.adopt),
             len(todo.missing), len(todo.orphans), len(todo.unknown))
    return todo


def _reconcile_all(hosts: list[str]) -> list[str]:
    """Reconcile each host; return those that could not be (database or driver down: tried again later)."""
    pending = []
    for host in hosts:
        try:
            reconcile_host(host)
        except Exception as exc:
            LOG.warning("reconcile %s failed, will retry: %s", host, exc)
            pending.append(host)
    return pending


def report_all(hosts: list[str]) -> list[str]:
    """Register each host's service and inventory; return the hosts whose driver works.

    A host whose driver cannot start (bad credentials, hypervisor gone) is registered with an empty inventory
    and no heartbeat, so it shows as down and the scheduler's ComputeFilter explains why boots avoid it.
    """
    cfg = get_settings()
    healthy = []
    for host in hosts:
        try:
            res = driver_for(host).get_available_resource()
        except Exception as exc:
            LOG.error("compute host %s: the %s driver is not working (%s); reporting the service down until it "
                      "recovers", host, cfg.compute_driver, exc)
            with _drivers_lock:
                _drivers.pop(host, None)  # retry init at the next report
            celery.send_task("stratus.conductor.report_service", queue="conductor", args=(host, {
                "hypervisor_hostname": host, "hypervisor_type": cfg.compute_driver, "hypervisor_version": 0,
                "vcpus": 0, "memory_mb": 0, "local_gb": 0, "host_ip": None,
                "availability_zone": cfg.availability_zone, "up": False}))
            continue
        healthy.append(host)
        celery.send_task("stratus.conductor.report_service", queue="conductor", args=(host, {
            "hypervisor_hostname": res.hypervisor_hostname, "hypervisor_type": res.hypervisor_type,
            "hypervisor_version": res.hypervisor_version, "vcpus": res.vcpus, "memory_mb": res.memory_mb,
            "local_gb": res.local_gb, "host_ip": res.host_ip, "availability_zone": cfg.availability_zone,
            "up": True, "traits": list(res.traits)}))
    return healthy


def heartbeat_loop(hosts: list[str], stop: threading.Event) -> None:
    """Register every host, then send one heartbeat for the healthy ones per interval and sync their power
    states; the full inventory is re-sent every tenth interval, and failed hosts are retried every interval.

    A tick that fails (the broker down for longer than the publish retries last) is logged and the next one
    tries again: the loop ends only with the worker, or the hosts would look down for good after an outage.
    """
    interval = get_settings().report_interval
    healthy: list[str] | None = None  # None until a full report went through
    unreconciled = list(hosts)
    for tick in itertools.count():
        try:
            healthy, unreconciled = _heartbeat_tick(hosts, healthy, unreconciled, tick)
        except Exception as exc:
            LOG.warning("compute heartbeat for %s failed, trying again in %s s: %s", ", ".join(hosts), interval,
                        exc)
        if stop.wait(interval):
            return


def _heartbeat_tick(hosts: list[str], healthy: list[str] | None, unreconciled: list[str],
                    tick: int) -> tuple[list[str], list[str]]:
    """One interval's reports; returns the healthy hosts and those whose power states are not reconciled yet.
    Nothing is reported while this worker's task consumer is dead (tasks/messaging/liveness.py): its hosts then
    show down after service_down_time and the scheduler stops sending boots to a queue no one reads."""
    alive, why = consumer_alive()
    if not alive:
        LOG.error("compute %s: no heartbeat, %s", ", ".join(hosts), why)
        return healthy, unreconciled
    if healthy is None or tick % 10 == 0:
        healthy = report_all(hosts)  # a registration counts as a heartbeat
    else:
        failed = [h for h in hosts if h not in healthy]
        if failed:
            healthy = [*healthy, *report_all(failed)]
        if healthy:
            celery.send_task("stratus.conductor.heartbeat", args=(healthy,), queue="conductor")
    if healthy and tick:
        sync_power_states.apply_async(args=({"host": healthy[0], "hosts": healthy},))
    ready = [h for h in unreconciled if h in healthy]
    return healthy, [h for h in unreconciled if h not in ready] + _reconcile_all(ready)


@celery.task(name="stratus.compute.cache_images", ignore_result=True)
def cache_images(host: str, image_ids: list[str]) -> None:
    """os-aggregates/{id}/images (2.81): pre-cache images on this host. Like Nova, a driver without an image
    cache or an image that fails is logged and skipped; there is no caller waiting for the result."""
    drv = driver_for(host)
    if type(drv).cache_image is ComputeDriver.cache_image:
        LOG.info("%s: the %s driver has no image cache; nothing to pre-cache", host, type(drv).__name__)
        return
    for image_id in image_ids:
        try:
            with read_session() as s:
                spec = image_spec(s, image_id)
            drv.cache_image(spec)
            LOG.info("%s: cached image %s", host, image_id)
        except DriverError as exc:
            LOG.warning("%s: could not cache image %s: %s", host, image_id, exc)
