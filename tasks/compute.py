"""Compute tasks (queue ``compute.<host>``): thin wrappers that call the host's driver.

One worker process may serve several hosts (many fake hosts for scale tests); the task's context names the
host, and the worker keeps one driver object per host. Compute workers never touch the DB (issue 25): what a step
needs of an instance arrives in its message (``ctx["spec"]``, made by tasks/conductor/specs.py; the user data
sealed for this host), and what they find (power states, guests at start-up) goes to the conductor as reports.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from core import host_keys, metadata_docs
from core.power_state import PowerState
from core.settings import get_settings
from drivers import load_driver
from drivers.base import ComputeDriver, ConsoleUnavailable, DriverError, HostLocalError, ImageSpec, InstanceNotFound, InstanceSpec
from drivers.serial_ports import PortRangeExhausted
from tasks.common import StopCanvas, step
from tasks.image_cache import host_cache
from tasks.messaging.celery_app import celery
from tasks.messaging.liveness import consumer_alive

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


def image_spec(msg: dict | None) -> ImageSpec | None:
    """The driver's ImageSpec of an image in a message (tasks/conductor/specs.image_message); None for None. Its
    data comes from the Image API into this host's image cache when the driver asks for it (tasks/image_cache.py):
    compute hosts share no disk with the controller."""
    if not msg:
        return None
    cache = host_cache()
    return ImageSpec(id=msg["id"], disk_format=msg["disk_format"], container_format=msg["container_format"],
                     size=msg["size"], checksum=msg["checksum"], properties=dict(msg["properties"] or {}),
                     path=str(cache.path(msg["id"])), kernel=image_spec(msg.get("kernel")),
                     ramdisk=image_spec(msg.get("ramdisk")), fetch=lambda: cache.fetch(msg["id"]))


def instance_spec(ctx: dict, host: str | None = None) -> InstanceSpec:
    """The driver's view of the instance from the step's message (``ctx["spec"]``, for ``host``: the config
    drive's user data is sealed for it)."""
    msg = ctx.get("spec")
    if not msg:
        raise DriverError(f"The message of this step carries no instance spec for {ctx['instance_uuid']}.")
    files = None
    if msg.get("config_drive") is not None:
        drive = msg["config_drive"]
        user_data = None
        if drive.get("sealed"):
            try:
                user_data = host_keys.open_sealed(host or ctx["host"], drive["sealed"], msg["uuid"])
            except host_keys.SealError as exc:  # this host's key changed since it reported it: try another
                raise HostLocalError(str(exc)) from None
        files = metadata_docs.InstanceMetadata(**drive["metadata"], user_data=user_data).config_drive_files()
    return InstanceSpec(uuid=msg["uuid"], name=msg["name"], hostname=msg["hostname"], project_id=msg["project_id"],
                        user_id=msg["user_id"], vcpus=msg["vcpus"], memory_mb=msg["memory_mb"],
                        root_gb=msg["root_gb"], flavor_name=msg["flavor_name"], flavor_id=msg["flavor_id"],
                        image=image_spec(msg.get("image")), key_data=msg.get("key_data"),
                        metadata=dict(msg.get("metadata") or {}), extra_specs=dict(msg.get("extra_specs") or {}),
                        network=msg.get("network"), config_drive_files=files,
                        root_device_tag=msg.get("root_device_tag"))


def _cleanup_after_failure(host: str, uuid: str) -> None:
    try:
        driver_for(host).destroy(uuid, destroy_disks=True)
    except Exception:  # the original failure is what matters; log this one
        LOG.exception("cleanup of %s on %s failed", uuid, host)


# Instances this process destroyed for a delete (the newest _TERMINATED_MAX, oldest first): a boot step of one still queued behind
# the delete ends quietly instead of building a guest nobody wants (what a task-state read did before compute
# hosts lost the DB; a step that misses this, in another process, is cleaned up by finish_boot).
_TERMINATED: OrderedDict[str, None] = OrderedDict()
_TERMINATED_MAX = 4096
_terminated_lock = threading.Lock()


def _note_terminated(uuid: str) -> None:
    with _terminated_lock:
        _TERMINATED[uuid] = None
        _TERMINATED.move_to_end(uuid)
        while len(_TERMINATED) > _TERMINATED_MAX:
            _TERMINATED.popitem(last=False)


def _was_terminated(uuid: str) -> bool:
    with _terminated_lock:
        return uuid in _TERMINATED


# What this process last knew of each guest it runs (host -> uuid -> power state): seeded by start-up
# reconciliation from the conductor's view, updated by every step that reports a power state. The power sync
# looks at these guests only, and reports to the conductor only what changed.
_KNOWN: dict[str, dict[str, int]] = {}
_known_lock = threading.Lock()


def track(host: str, uuid: str, power: int) -> None:
    with _known_lock:
        _KNOWN.setdefault(host, {})[uuid] = power


def forget(uuid: str, host: str | None = None) -> None:
    with _known_lock:
        for h, guests in _KNOWN.items():
            if host is None or h == host:
                guests.pop(uuid, None)


def _build_step(ctx: dict, *calls: str) -> dict:
    """Run a boot's driver steps (``build_disk``, ``spawn``, or both in turn); on failure remove what they left, so
    a reschedule starts clean. After spawn, a guest with a tagged NIC or root disk also reports where the driver
    put them: finish_boot stores that for the metadata service (Nova's spawn saves instance.device_metadata)."""
    uuid = ctx["instance_uuid"]
    if _was_terminated(uuid):
        raise StopCanvas("instance was deleted")
    spec = instance_spec(ctx)
    driver = driver_for(ctx["host"])
    try:
        for call in calls:
            if call == "spawn" and _was_terminated(uuid):  # a delete ran while the disk was built: no guest
                _cleanup_after_failure(ctx["host"], uuid)    # for it, and no disk left behind
                raise StopCanvas("instance was deleted")
            getattr(driver, call)(spec)
        if "spawn" in calls and (spec.root_device_tag or (spec.network or {}).get("tag")):
            ctx = {**ctx, "device_metadata": driver.device_metadata(spec)}
    except StopCanvas:
        raise  # the delete's terminate removes the guest
    except Exception:
        _cleanup_after_failure(ctx["host"], spec.uuid)
        raise
    if "spawn" in calls:  # finish_boot needs the IDs only
        track(ctx["host"], spec.uuid, PowerState.RUNNING)
        return {k: v for k, v in ctx.items() if k != "spec"}
    return ctx


@celery.task(name="stratus.compute.build")
@step
def build(ctx: dict) -> dict:
    """The boot's compute step: build the disk, then spawn the guest, in one message (one broker hop and one task
    less per boot than build_disk then spawn). Both driver calls are idempotent, so a redelivered message after a
    worker died in either finishes what is half done (docs/architecture-notes.md, Reliability)."""
    return _build_step(ctx, "build_disk", "spawn")


# The two steps separately: chains queued by an older conductor, and anything that wants one of them alone.
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
    power = drv.get_info(ctx["instance_uuid"]).power_state
    track(ctx["host"], ctx["instance_uuid"], power)
    return {**ctx, "power_state": power}


@celery.task(name="stratus.compute.terminate")
@step
def terminate(ctx: dict) -> dict:
    if ctx.get("action") == "delete":
        _note_terminated(ctx["instance_uuid"])
    driver_for(ctx["host"]).destroy(ctx["instance_uuid"], destroy_disks=True)
    forget(ctx["instance_uuid"], ctx["host"])
    return ctx


def driver_reply(what: str, call: Callable[[], Any]) -> dict:
    """An API-facing driver query as an RPC reply: {"ok": result}, or 404 (no such guest), 501 (the driver cannot
    do ``what``), 400 (the guest has no console of the type asked), 409 (the guest cannot now)."""
    try:
        return {"ok": call()}
    except InstanceNotFound as exc:
        return {"error": {"code": 404, "message": str(exc)}}
    except NotImplementedError:
        return {"error": {"code": 501, "message": f"The {get_settings().compute_driver} compute driver does not "
                                                  f"support {what}."}}
    except (ConsoleUnavailable, PortRangeExhausted) as exc:  # Nova: 400 for both
        return {"error": {"code": 400, "message": str(exc)}}
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
    """API-facing: where a console proxy must connect for the guest's ``ctx["kind"]`` ("vnc" | "spice" |
    "serial"). As Nova's compute manager: serial consoles turned off on this host are 400 "Unavailable console
    type", a driver without the console type 501."""
    kind = ctx["kind"]
    if kind == "serial" and not get_settings().serial_console_enabled:
        return {"error": {"code": 400, "message": ConsoleUnavailable(kind).args[0]}}
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

    One task covers every host this worker serves (``ctx["hosts"]``; routed by ``ctx["host"]``): the guests this
    process knows on them (``_KNOWN``) are asked of the driver, and only changes are sent on, one report per host
    (the conductor applies those of instances it places on that host and drops the rest).
    """
    hosts = ctx.get("hosts") or [ctx["host"]]
    with _known_lock:
        known = [(host, uuid, power) for host in hosts for uuid, power in _KNOWN.get(host, {}).items()]
    changes: dict[str, list] = {}
    for host, uuid, last in known:
        try:
            power = driver_for(host).get_info(uuid).power_state
        except InstanceNotFound:
            power = PowerState.NOSTATE
        except DriverError as exc:
            LOG.warning("power state of %s on %s unknown: %s", uuid, host, exc)
            continue
        if power != last:
            changes.setdefault(host, []).append([uuid, power])
            if power == PowerState.NOSTATE:
                forget(uuid, host)
            else:
                track(host, uuid, power)
    for host, host_changes in changes.items():
        celery.send_task("stratus.conductor.sync_power_states", args=(host, host_changes), queue="conductor")


# --- worker lifecycle ----------------------------------------------------------------------------------------------

def reconcile_host(host: str) -> None:
    """Start-up reconciliation of one host (``_reconcile_all`` batches a worker's hosts into one message)."""
    _reconcile_all([host])


@celery.task(name="stratus.compute.reconciled", ignore_result=True)
def reconciled(host: str, todo: dict) -> None:
    """The conductor's answer to ``reconcile_hosts`` for one host: destroy the orphans (deleted in the DB, or
    placed on another host), adopt the known guests with the power state the DB has (the next power sync reports
    any difference), and log the unknown ones (left alone)."""
    reconciled_hosts({host: todo})


@celery.task(name="stratus.compute.reconciled_hosts", ignore_result=True)
def reconciled_hosts(answers: dict[str, dict]) -> None:
    """The conductor's answer to a worker's batched reconciliation: ``reconciled`` for each host, then one power
    sync for the hosts that adopted guests."""
    adopted = []
    for host, todo in answers.items():
        _reconciled(host, todo)
        if todo.get("adopt"):
            adopted.append(host)
    if adopted:
        sync_power_states.apply_async(args=({"host": adopted[0], "hosts": adopted},))


def _reconciled(host: str, todo: dict) -> None:
    drv = driver_for(host)
    for uuid in todo.get("orphans", ()):
        LOG.warning("reconcile %s: destroying orphan %s (deleted in the DB, or placed on another host)", host, uuid)
        drv.destroy(uuid, destroy_disks=True)
        forget(uuid, host)
    for uuid in todo.get("unknown", ()):
        LOG.warning("reconcile %s: guest %s is unknown to this cloud's database; left alone", host, uuid)
    for uuid, power in (todo.get("adopt") or {}).items():
        track(host, uuid, power)
    if any(todo.get(k) for k in ("adopt", "missing", "orphans", "unknown")):
        LOG.info("reconcile %s: %d adopted, %d missing, %d orphan(s) destroyed, %d unknown", host,
                 len(todo.get("adopt") or {}), len(todo.get("missing", ())), len(todo.get("orphans", ())),
                 len(todo.get("unknown", ())))


def _reconcile_all(hosts: list[str]) -> list[str]:
    """At worker start: send the conductor, in one message, the guests and disks each host's driver has; it answers
    with ``reconciled_hosts`` (which guests to destroy, which to adopt) and sets the ones it expects but a driver
    lacks to ERROR. Returns the hosts that could not be reconciled (driver or broker down: tried again later)."""
    found: dict[str, list] = {}
    pending = []
    for host in hosts:
        try:
            drv = driver_for(host)
            found[host] = [sorted(drv.list_instances()), sorted(drv.list_disks())]
        except Exception as exc:
            LOG.warning("reconcile %s failed, will retry: %s", host, exc)
            pending.append(host)
    if found:
        try:
            celery.send_task("stratus.conductor.reconcile_hosts", queue="conductor", args=(found,))
        except Exception as exc:
            LOG.warning("reconcile of %d host(s) failed, will retry: %s", len(found), exc)
            pending.extend(found)
    return pending


def _inventory(host: str) -> dict:
    """What the conductor records of one host: its driver's inventory, or, for a driver that cannot start (bad
    credentials, hypervisor gone), an empty one marked down, so the host shows down and the scheduler's
    ComputeFilter explains why boots avoid it."""
    cfg = get_settings()
    try:
        res = driver_for(host).get_available_resource()
    except Exception as exc:
        LOG.error("compute host %s: the %s driver is not working (%s); reporting the service down until it "
                  "recovers", host, cfg.compute_driver, exc)
        with _drivers_lock:
            _drivers.pop(host, None)  # retry init at the next report
        return {"hypervisor_hostname": host, "hypervisor_type": cfg.compute_driver, "hypervisor_version": 0,
                "vcpus": 0, "memory_mb": 0, "local_gb": 0, "host_ip": None,
                "availability_zone": cfg.availability_zone, "up": False, "sealing_key": host_keys.public_key(host)}
    return {"hypervisor_hostname": res.hypervisor_hostname, "hypervisor_type": res.hypervisor_type,
            "hypervisor_version": res.hypervisor_version, "vcpus": res.vcpus, "memory_mb": res.memory_mb,
            "local_gb": res.local_gb, "host_ip": res.host_ip, "availability_zone": cfg.availability_zone,
            "up": True, "traits": list(res.traits), "sealing_key": host_keys.public_key(host)}


def report_all(hosts: list[str], reported: dict[str, dict] | None = None, served: list[str] | None = None,
               alive: list[str] = ()) -> list[str]:
    """Read each host's inventory and send the conductor ONE message (``stratus.conductor.heartbeat``) with the
    inventories that differ from ``reported`` (what this worker last sent; None: send all), which also marks the
    working hosts and ``alive`` up; ``reported`` is updated once the message went out. Returns the hosts of
    ``hosts`` whose driver works. A registration counts as a heartbeat."""
    inventories = {host: _inventory(host) for host in hosts}
    healthy = [h for h in hosts if inventories[h]["up"]]
    changed = {h: inv for h, inv in inventories.items() if reported is None or reported.get(h) != inv}
    up = [*alive, *(h for h in healthy if h not in alive)]
    if changed:  # the conductor checks that each report is about a host this worker serves
        celery.send_task("stratus.conductor.heartbeat", queue="conductor",
                         args=(up, changed, list(served if served is not None else hosts)))
    elif up:
        celery.send_task("stratus.conductor.heartbeat", queue="conductor", args=(up,))
    if reported is not None:
        reported.update(changed)
    return healthy


# Every tenth interval each host's inventory is read again (Nova's update_available_resource, every 60 s by
# default) and only changes are sent; every FULL_REPORT_EVERY intervals all of them are, in the same one message:
# the conductor's rows can change behind the worker's back (a service deleted by an admin while it runs, a
# database restored), and the conductor writes only what differs, so a full report costs it two reads per
# thousand hosts. A service an admin deleted while its worker runs is registered again by the next full report
# (Nova's compute re-creates its service record on its next report too).
INVENTORY_EVERY = 10
FULL_REPORT_EVERY = 20


def heartbeat_loop(hosts: list[str], stop: threading.Event) -> None:
    """Register every host, then send one heartbeat for the healthy ones per interval and sync their power
    states; the inventories are read every INVENTORY_EVERY intervals and the changed ones ride on that
    interval's heartbeat, failed hosts are retried every interval, all are re-sent every FULL_REPORT_EVERY.

    A tick that fails (the broker down for longer than the publish retries last) is logged and the next one
    tries again: the loop ends only with the worker, or the hosts would look down for good after an outage.
    """
    interval = get_settings().report_interval
    healthy: list[str] | None = None  # None until a full report went through
    unreconciled = list(hosts)
    reported: dict[str, dict] = {}
    for tick in itertools.count():
        try:
            healthy, unreconciled = _heartbeat_tick(hosts, healthy, unreconciled, tick, reported)
        except Exception as exc:
            LOG.warning("compute heartbeat for %s failed, trying again in %s s: %s", ", ".join(hosts[:3]),
                        interval, exc)
        if stop.wait(interval):
            return


def _heartbeat_tick(hosts: list[str], healthy: list[str] | None, unreconciled: list[str], tick: int,
                    reported: dict[str, dict] | None = None) -> tuple[list[str], list[str]]:
    """One interval's report (one message); returns the healthy hosts and those whose power states are not
    reconciled yet. Nothing is reported while this worker's task consumer is dead (tasks/messaging/liveness.py):
    its hosts then show down after service_down_time and the scheduler stops sending boots to a queue no one
    reads."""
    alive, why = consumer_alive()
    if not alive:
        LOG.error("compute %s: no heartbeat, %s", ", ".join(hosts[:3]), why)
        return healthy, unreconciled
    reported = {} if reported is None else reported
    if healthy is None or tick % FULL_REPORT_EVERY == 0:
        reported.clear()
        healthy = report_all(hosts, reported, hosts)
    elif tick % INVENTORY_EVERY == 0:
        healthy = report_all(hosts, reported, hosts)
    else:
        failed = [h for h in hosts if h not in healthy]
        healthy = [*healthy, *report_all(failed, reported, hosts, alive=healthy)]
    if healthy and tick:
        sync_power_states.apply_async(args=({"host": healthy[0], "hosts": healthy},))
    ready = [h for h in unreconciled if h in healthy]
    return healthy, [h for h in unreconciled if h not in ready] + (_reconcile_all(ready) if ready else [])


@celery.task(name="stratus.compute.cache_images", ignore_result=True)
def cache_images(host: str, images: list[dict]) -> None:
    """os-aggregates/{id}/images (2.81): pre-cache images on this host (each as tasks/conductor/specs.image_message
    gives it). Like Nova, a driver without an image cache or an image that fails is logged and skipped; there is
    no caller waiting for the result."""
    drv = driver_for(host)
    if type(drv).cache_image is ComputeDriver.cache_image:
        LOG.info("%s: the %s driver has no image cache; nothing to pre-cache", host, type(drv).__name__)
        return
    for image in images:
        try:
            drv.cache_image(image_spec(image))
            LOG.info("%s: cached image %s", host, image["id"])
        except DriverError as exc:
            LOG.warning("%s: could not cache image %s: %s", host, image["id"], exc)
