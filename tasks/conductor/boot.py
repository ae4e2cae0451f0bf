"""The conductor's side of a server's life (queue ``conductor``): the create call and the boot canvas's conductor
steps (claim, finish_boot), the basic server actions (power actions and delete, ``finish_action``,
``finish_delete``), the failure of any canvas step (``step_failed``: faults, reschedules) and what compute hosts
report (services, heartbeats, power states).

API calls return ``{"ok": ...}`` or ``{"error": {...}}`` and the API waits for them (tasks/conductor/common.py);
canvas steps receive the context dict of IDs from the step before. The conductor is the only writer of the
compute database.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import String, bindparam, delete, select

from core import image_store, states
from core.db import plain_rows, write_session
from core.errors import ConductorError
from core.host_zones import zone_of
from core.models import ConsoleAuthToken, Instance, utcnow
from core.power_state import PowerState
from core.settings import get_settings
from core.writes import instances, resources
from core.writes.groups import remove_group_member
from core.writes.instances import add_fault, cas_instance, get_instance, record_event, start_action
from core.writes.networking import delete_password, release_fixed_ips
from core.writes.quotas import release_quota
from core.writes.resources import release_allocation, report_heartbeat
from scheduler.filters import group_filter_rejecting
from tasks.common import Chain, StopCanvas, boot_canvas, new_ctx, sig, step
from tasks.conductor import specs
from tasks.conductor.common import drop_unfinished_snapshots, rpc, snapshot_failed
from tasks.conductor.moves import MOVE_ACTIONS, abandon_moves, drop_shelved_image, move_failed
from tasks.groups import group_spec
from tasks.messaging.celery_app import celery
from tasks.messaging.transient import BROKER_ERRORS

LOG = logging.getLogger(__name__)


# --- API calls -----------------------------------------------------------------------------------------------------

@rpc("create_instances", session=False)
def create_instances(req: dict) -> dict:
    with write_session() as s:
        uuids = instances.create_instances(s, req)
    for index, uuid in enumerate(uuids):
        try:
            boot_canvas(new_ctx(uuid, req["request_id"], "create", tried=[],
                                requested_host=req.get("requested_host"))).apply_async()
        except BROKER_ERRORS as exc:
            # The rows are committed but their boots could not be queued (publishing retried for a while):
            # nothing may stay in BUILD, and the API must not answer 202.
            _not_queued(uuids[index:], req["request_id"], exc)
            raise ConductorError(503, "The compute service is temporarily unavailable (message broker "
                                      "unreachable); the server was not created.") from None
    return {"uuids": uuids}


def _not_queued(uuids: list[str], request_id: str, exc: BaseException) -> None:
    LOG.error("could not queue the boot of %s: %s", uuids, exc)
    with write_session() as s:
        for uuid in uuids:
            if cas_instance(s, uuid, expected_task_state=states.SCHEDULING, vm_state=states.ERROR,
                            task_state=None, power_state=PowerState.NOSTATE):
                add_fault(s, uuid, 503, f"The boot could not be queued: message broker unavailable "
                                        f"({exc})")
                record_event(s, uuid, request_id, "conductor_schedule_and_build_instances", None,
                             "Error")


@rpc("server_action", session=False)
def server_action(req: dict) -> dict:
    """CAS the instance into the action's task_state, record the action, start the compute canvas."""
    uuid, action = req["instance_uuid"], req["action"]
    with write_session() as s:
        inst = _action_state(s, uuid)
        if action == "delete":
            task_state = states.DELETING
            # Delete is allowed in any state: when a boot step moves task_state under us, read it again.
            for _ in range(5):
                if inst.task_state == states.DELETING:
                    return {"instance_uuid": uuid}
                ok = cas_instance(s, uuid, expected_task_state=inst.task_state, task_state=task_state)
                if ok:
                    break
                inst = _action_state(s, uuid)
        else:
            rule = states.ACTIONS[action]
            if inst.vm_state not in rule["from"]:
                raise ConductorError(409, f"Cannot '{_api_name(action)}' instance {uuid} while it is in vm_state "
                                          f"{inst.vm_state}")
            if inst.task_state is not None:
                raise ConductorError(409, f"Cannot '{_api_name(action)}' instance {uuid} while it is in "
                                          f"task_state {inst.task_state}")
            task_state = rule["task_state"]
            ok = cas_instance(s, uuid, expected_task_state=None, expected_vm_states=rule["from"],
                              task_state=task_state)
        if not ok:
            raise ConductorError(409, f"Cannot '{_api_name(action)}' instance {uuid}: it changed state "
                                      f"concurrently; retry the request.")
        host = inst.host
        ctx = new_ctx(uuid, req["request_id"], action, host=host, task_state=task_state)
        if action == "delete":
            steps = DELETE_STEPS if host else DELETE_STEPS[1:]
        else:
            steps = ("stratus.compute.power_action", "stratus.conductor.finish_action")
        # The action's row with its canvas in one INSERT (tasks/conductor/resume.py sends it again if lost).
        start_action(s, uuid, _api_name(action), req["request_id"], req.get("user_id"), req.get("project_id"),
                     canvas=(ctx, steps))
    try:
        Chain(steps, ctx).apply_async()
    except BROKER_ERRORS as exc:
        LOG.error("could not queue %s of %s: %s", action, uuid, exc)
        with write_session() as s:  # give the task_state back: the action never started
            cas_instance(s, uuid, expected_task_state=task_state, task_state=inst.task_state
                         if action == "delete" else None)
        raise ConductorError(503, "The compute service is temporarily unavailable (message broker "
                                  "unreachable); the action was not started.") from None
    return {"instance_uuid": uuid}


DELETE_STEPS = ("stratus.compute.terminate", "stratus.conductor.finish_delete")
# What an action reads of its instance: plain columns, not the whole ORM row (its large JSON columns decoded and
# an object built, for three values).
_ACTION_QUERY = select(Instance.task_state, Instance.vm_state, Instance.host).where(
    Instance.uuid == bindparam("uuid", type_=String))


def _action_state(s, uuid: str) -> Any:
    inst = plain_rows(s, _ACTION_QUERY, {"uuid": uuid}).first()
    if inst is None:
        raise ConductorError(404, f"Instance {uuid} could not be found.")
    return inst


def _api_name(action: str) -> str:
    return {"reboot_hard": "reboot"}.get(action, action)


# --- compute service reports ---------------------------------------------------------------------------------------

@celery.task(name="stratus.conductor.report_service", ignore_result=True)
def report_service(host: str, inventory: dict) -> None:
    with write_session() as s:
        resources.report_service(s, host, inventory)


@celery.task(name="stratus.conductor.heartbeat", ignore_result=True)
def heartbeat(hosts: list[str], reports: dict[str, dict] | None = None, served: list[str] | None = None) -> None:
    """A compute worker's one message per report_interval: its working ``hosts`` are up, and ``reports`` holds
    the inventories that changed since it last reported them (all of them at registration), for the hosts it
    ``served`` (its queues); a report about another worker's host is refused (logged and dropped)."""
    if reports and served is not None:
        own = set(served)
        for host in [h for h in reports if h not in own]:
            LOG.warning("inventory report about %s refused: the reporting worker serves %s", host,
                        ", ".join(served[:3]) + (" ..." if len(served) > 3 else ""))
            del reports[host]
        hosts = [h for h in hosts if h in own]
    with write_session() as s:
        if reports:
            resources.report_services(s, reports)
        if hosts:
            report_heartbeat(s, hosts)


@celery.task(name="stratus.conductor.service_heartbeat", ignore_result=True, autoretry_for=())
def service_heartbeat(host: str, binary: str) -> None:
    """The heartbeat of a conductor or scheduler process (tasks/service_heartbeat.py); a late one expires in
    the queue instead of marking a stopped process up."""
    with write_session() as s:
        resources.report_process_heartbeat(s, host, binary)


# --- canvas steps --------------------------------------------------------------------------------------------------

@celery.task(name="stratus.conductor.claim")
@step
def claim(ctx: dict) -> dict:
    """Allocate resources on the first of ctx["hosts"] that still has room; CAS the instance onto it.

    A member of an affinity or anti-affinity group is re-checked here against the hosts its group's members hold
    now: the group row is locked for the transaction, so concurrent claims in one group are serialised and each
    sees the others' committed hosts. If every chosen host breaks the policy, the boot is scheduled again."""
    uuid = ctx["instance_uuid"]
    rejected: dict[str, str] = {}
    keyless: list[str] = []
    with write_session() as s:
        # One read: the spec the compute step gets is also what the claim checks and takes (state, hints, size).
        inst = spec_row = specs.read_spec(s, uuid)
        if inst is None or inst.task_state != states.SCHEDULING:
            raise StopCanvas(f"instance is {inst.task_state if inst else 'deleted'}, not scheduling")
        group = group_spec(s, uuid, lock=True) if (inst.scheduler_hints or {}).get("group") else None
        hosts = list(ctx["hosts"])
        while hosts:
            host = hosts.pop(0)
            refused_by = group_filter_rejecting(group, host)
            if refused_by:
                LOG.info("instance %s: %s rejects %s at claim time (server group %s)", uuid, refused_by, host,
                         group.uuid if group else "")
                rejected[host] = refused_by
                continue
            if specs.needs_sealing(spec_row) and not specs.sealing_key(s, host):
                LOG.warning("instance %s: %s has reported no sealing key; its user data cannot go there", uuid,
                            host)
                keyless.append(host)
                continue
            if resources.claim(s, inst, host):
                node, zone = host, _az_of(s, host)
                if not cas_instance(s, uuid, expected_task_state=states.SCHEDULING, host=host, node=node,
                                    task_state=states.SPAWNING, availability_zone=zone):
                    raise StopCanvas("instance changed while claiming")  # rolls the claim back
                # The compute steps read no DB: the spec travels in their message (its user data sealed for host)
                return {**ctx, "host": host, "alternates": hosts, "attempt": ctx.get("attempt", 1),
                        "spec": specs.spec_message(s, uuid, host, row=spec_row, zone=zone)}
    if rejected:
        _schedule_again_for_group(ctx, group.uuid if group else "", rejected)
    if keyless:
        raise ConductorError(500, f"No valid host was found. {', '.join(keyless)}: no sealing key reported, so the "
                                  f"server's user data cannot be sent there (compute service too old?).")
    raise ConductorError(500, "No valid host was found. All chosen hosts were filled by concurrent "
                              "requests before the claim.")


def _schedule_again_for_group(ctx: dict, group_uuid: str, rejected: dict[str, str]) -> None:
    """Other members of the group took the chosen hosts after the scheduler looked: schedule again with a fresh
    view (the scheduler then explains a "No valid host" by the group filter), a bounded number of times."""
    retries = ctx.get("group_retries", 0)
    summary = "; ".join(f"{name} rejected {host}" for host, name in rejected.items())
    if retries >= get_settings().max_attempts:
        raise ConductorError(500, f"No valid host was found. {summary} (server group {group_uuid}: its "
                                  f"other members took these hosts while this boot was scheduled).")
    LOG.info("instance %s: %s at claim time; scheduling again", ctx["instance_uuid"], summary)
    retry = {k: v for k, v in ctx.items() if k not in ("hosts", "explanation", "spec")}
    boot_canvas({**retry, "group_retries": retries + 1}).apply_async()
    raise StopCanvas(f"scheduled again after {summary}")


def _az_of(s, host: str) -> str:
    return zone_of(s, host) or "nova"


def _device_metadata(ctx: dict) -> dict:
    """The tagged devices the spawn step reported (absent when the instance has no device tag)."""
    return {"device_metadata": ctx["device_metadata"]} if "device_metadata" in ctx else {}


@celery.task(name="stratus.conductor.finish_boot", ignore_result=True)
def finish_boot(ctx: dict) -> None:
    uuid = ctx["instance_uuid"]
    with write_session() as s:
        ok = cas_instance(s, uuid, expected_task_state=states.SPAWNING, vm_state=states.ACTIVE,
                          task_state=None, power_state=PowerState.RUNNING, launched_at=utcnow(),
                          progress=100, **_device_metadata(ctx))
        if ok:
            record_event(s, uuid, ctx["request_id"], "compute__do_build_and_run_instance", ctx.get("t0"),
                         "Success", host=ctx.get("host"))
            return
        inst = s.scalars(select(Instance).where(Instance.uuid == uuid)).first()
    if inst is None or inst.deleted:
        # Deleted while it was spawning: the delete may have run before the guest existed.
        LOG.info("instance %s was deleted during its build; cleaning up on %s", uuid, ctx.get("host"))
        sig("stratus.compute.terminate", {**ctx, "action": "cleanup"}).apply_async()


@celery.task(name="stratus.conductor.finish_action", ignore_result=True)
def finish_action(ctx: dict) -> None:
    uuid, action = ctx["instance_uuid"], ctx["action"]
    target = states.ACTIONS[action]["to"]
    with write_session() as s:
        if cas_instance(s, uuid, expected_task_state=ctx["task_state"], vm_state=target, task_state=None,
                        power_state=ctx.get("power_state", states.POWER_AFTER[target])):
            record_event(s, uuid, ctx["request_id"], f"compute_{_api_name(action)}_instance",
                         ctx.get("t0"), "Success", host=ctx.get("host"))
        else:
            LOG.info("finish_action %s for %s lost its race; nothing written", action, uuid)


@celery.task(name="stratus.conductor.finish_delete", ignore_result=True)
def finish_delete(ctx: dict) -> None:
    uuid = ctx["instance_uuid"]
    with write_session() as s:
        inst = plain_rows(s, _DELETE_QUERY, {"uuid": uuid}).first()
        if inst is None or inst.task_state != states.DELETING:
            return  # already deleted (a redelivered message)
        release_allocation(s, uuid)
        other_hosts = abandon_moves(s, uuid, inst.host)
        release_fixed_ips(s, uuid)
        delete_password(s, uuid)
        release_quota(s, inst.project_id, inst.vcpus, inst.memory_mb, inst.user_id)
        if (inst.scheduler_hints or {}).get("group"):  # members join at boot, by this hint only
            remove_group_member(s, uuid)
        _delete_console_tokens(s, uuid)
        shelved_image, _ = drop_shelved_image(s, inst)  # Nova deletes a shelved server's snapshot too
        unfinished = drop_unfinished_snapshots(s, inst)  # a snapshot or shelve the delete cut short
        now = utcnow()
        cas_instance(s, uuid, expected_task_state=states.DELETING, vm_state=states.DELETED,
                     task_state=None, power_state=PowerState.NOSTATE, deleted=inst.id, deleted_at=now,
                     terminated_at=now)
        # The delete's action finished and any other still open finished as failed, in one UPDATE.
        record_event(s, uuid, ctx["request_id"], "compute_terminate_instance", ctx.get("t0"), "Success",
                     host=ctx.get("host"), finish_open=True)
    for image_id in ([shelved_image] if shelved_image else []) + unfinished:
        image_store.delete(image_id)
    for host in other_hosts:  # e.g. the source guest a resize awaiting confirmation kept
        sig("stratus.compute.terminate", {**ctx, "host": host, "action": "cleanup"}).apply_async()


# What finish_delete reads of the instance, locked: plain columns (it writes through statements, not the object).
_DELETE_QUERY = select(Instance.id, Instance.uuid, Instance.task_state, Instance.host, Instance.project_id,
                       Instance.user_id, Instance.vcpus, Instance.memory_mb, Instance.scheduler_hints,
                       Instance.system_metadata).where(Instance.uuid == bindparam("uuid", type_=String)
                                                       ).with_for_update()


def _delete_console_tokens(s, uuid: str) -> None:
    s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.instance_uuid == uuid))


@celery.task(name="stratus.conductor.step_failed", ignore_result=True)
def step_failed(ctx: dict, message: str, details: str, reschedulable: bool) -> None:
    uuid, action = ctx["instance_uuid"], ctx["action"]
    if action == "create":
        _boot_failed(ctx, message, details, reschedulable)
        return
    if action == "cleanup":
        LOG.error("cleanup of deleted instance %s on %s failed: %s", uuid, ctx.get("host"), message)
        return
    if action in MOVE_ACTIONS:
        move_failed(ctx, message, details)
        return
    if action in ("snapshot", "backup"):
        snapshot_failed(ctx)
    with write_session() as s:
        values: dict[str, Any] = {"task_state": None}
        if action == "delete":
            values["vm_state"] = states.ERROR
        if cas_instance(s, uuid, expected_task_state=ctx.get("task_state"), **values):
            add_fault(s, uuid, 500, message, details, ctx.get("host"))
            record_event(s, uuid, ctx["request_id"], f"compute_{_api_name(action)}_instance",
                         ctx.get("t0"), "Error", host=ctx.get("host"), traceback=details,
                         details=message)


def _boot_failed(ctx: dict, message: str, details: str, reschedulable: bool) -> None:
    uuid = ctx["instance_uuid"]
    cfg = get_settings()
    attempt = ctx.get("attempt", 1)
    alternates = list(ctx.get("alternates") or [])
    with write_session() as s:
        inst = get_instance(s, uuid, lock=True)
        if inst is None or inst.task_state not in (states.SCHEDULING, states.SPAWNING):
            release_allocation(s, uuid)
            return  # deleted or moved on; the delete path cleans up the rest
        release_allocation(s, uuid)
        if reschedulable and alternates and attempt < cfg.max_attempts:
            cas_instance(s, uuid, expected_task_state=inst.task_state, task_state=states.SCHEDULING,
                         host=None, node=None, attempts=attempt)
            record_event(s, uuid, ctx["request_id"], "compute__do_build_and_run_instance",
                         ctx.get("t0"), "RescheduledOnHost", host=ctx.get("host"), traceback=details,
                         finish_action=False, details=message)
            retry = {**ctx, "hosts": alternates, "attempt": attempt + 1,
                     "tried": [*ctx.get("tried", []), ctx.get("host")]}
            retry.pop("host", None)
            retry.pop("spec", None)  # sealed for the failed host; the claim makes the next one's
            LOG.info("rescheduling %s to %s after: %s", uuid, alternates, message)
        else:
            retry = None
            cas_instance(s, uuid, expected_task_state=inst.task_state, vm_state=states.ERROR,
                         task_state=None, power_state=PowerState.NOSTATE)
            add_fault(s, uuid, 500, message, details, ctx.get("host"))
            record_event(s, uuid, ctx["request_id"], "compute__do_build_and_run_instance",
                         ctx.get("t0"), "Error", host=ctx.get("host"), traceback=details,
                         details=message)
    if retry is not None:
        boot_canvas(retry, first="stratus.conductor.claim").apply_async()


@celery.task(name="stratus.conductor.sync_power_states", ignore_result=True)
def sync_power_states(host: str, changes: list[list]) -> None:
    """Record power states a compute host observed; a guest that stopped by itself becomes SHUTOFF (as Nova's
    _sync_power_states stops it). A report about an instance the DB does not place on ``host`` is refused (logged
    and dropped): a host speaks only for its own guests."""
    with write_session() as s:
        for uuid, power in changes:
            inst = get_instance(s, uuid)
            if inst is None or inst.deleted or inst.host != host:
                LOG.warning("power state report from %s about instance %s refused: it is not on that host (%s)",
                            host, uuid, "deleted" if inst is None or inst.deleted else f"on {inst.host}")
                continue
            if inst.task_state is not None or inst.power_state == power:
                continue
            values: dict[str, Any] = {"power_state": power}
            if inst.vm_state == states.ACTIVE and power in (PowerState.SHUTDOWN, PowerState.CRASHED,
                                                            PowerState.NOSTATE):
                values["vm_state"] = states.STOPPED
                LOG.warning("instance %s on %s stopped outside Stratus (power state %s); marking it SHUTOFF",
                            uuid, host, power)
            cas_instance(s, uuid, expected_task_state=None, expected_vm_states=(inst.vm_state,), **values)
