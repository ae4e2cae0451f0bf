"""Scheduler task (queue ``scheduler``): read host states, run scheduler.manager, pass the hosts on."""
from __future__ import annotations

from sqlalchemy import String, bindparam, select

from core import states
from core.db import plain_rows, read_session
from core.models import Instance
from core.settings import get_settings
from scheduler.filters import DEFAULT_FILTERS
from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import NoValidHost, Selection, select_destinations
from scheduler.weighers import default_weighers
from tasks.common import StopCanvas, step
from tasks.groups import group_spec
from tasks.host_cache import CACHE, HostStateCache, candidates, load_all
from tasks.messaging.celery_app import celery

load_host_states = load_all  # every host's state from the DB, uncached


def decide(hosts: list[HostState], spec: RequestSpec, max_attempts: int) -> Selection:
    """Filter and weigh a bounded sample of the hosts first; all of them only if nothing in the sample fits."""
    cfg = get_settings()
    if spec.requested_host is not None:  # the filters still run on the one requested host (Nova 2.74)
        hosts = [h for h in hosts if h.host == spec.requested_host]
    weighers = default_weighers(cfg.soft_affinity_weight_multiplier, cfg.soft_anti_affinity_weight_multiplier,
                                cfg.ram_weight_multiplier)
    sample = hosts if spec.group else candidates(hosts)  # a group needs its members' hosts in view
    try:
        return select_destinations(sample, spec, max_attempts=max_attempts, filters=DEFAULT_FILTERS,
                                   weighers=weighers)
    except NoValidHost:
        if sample is hosts:
            raise
    return select_destinations(hosts, spec, max_attempts=max_attempts, filters=DEFAULT_FILTERS, weighers=weighers)


def schedule_with(cache: HostStateCache, session, spec: RequestSpec, max_attempts: int) -> Selection:
    """One decision on the cached host states; the chosen host's cached state consumes the request. Decisions of
    one process take turns (the scheduler's threads overlap only their broker and database waits), so each sees
    what the one before it consumed, as in a single-threaded scheduler. The refresh's database read is not part
    of a turn: one thread's read overlaps the other's decision."""
    cache.refresh(session)
    with cache.lock:
        selection = decide(cache.current(), spec, max_attempts)
        cache.consume(selection.hosts[0], spec)
    return selection


# The instance's columns a request spec is made of.
_REQUEST_COLUMNS = (Instance.uuid, Instance.task_state, Instance.scheduler_hints, Instance.vcpus, Instance.memory_mb,
                    Instance.root_gb, Instance.requested_availability_zone, Instance.project_id,
                    Instance.flavor_snapshot)
_REQUEST_QUERY = select(*_REQUEST_COLUMNS).where(Instance.uuid == bindparam("uuid", type_=String),
                                                 Instance.deleted == 0)


@celery.task(name="stratus.scheduler.schedule")
@step
def schedule(ctx: dict) -> dict:
    with read_session() as s:
        inst = plain_rows(s, _REQUEST_QUERY, {"uuid": ctx["instance_uuid"]}).first()
        if inst is None or inst.task_state != states.SCHEDULING:
            raise StopCanvas("instance is no longer scheduling")
        hints = inst.scheduler_hints or {}
        spec = RequestSpec(instance_uuid=inst.uuid, vcpus=inst.vcpus, memory_mb=inst.memory_mb,
                           root_gb=inst.root_gb, availability_zone=inst.requested_availability_zone,
                           ignore_hosts=frozenset(h for h in ctx.get("tried", []) if h), scheduler_hints=hints,
                           group=group_spec(s, inst.uuid) if hints.get("group") else None, project_id=inst.project_id,
                           extra_specs=dict((inst.flavor_snapshot or {}).get("extra_specs") or {}),
                           requested_host=ctx.get("requested_host"))
        # NoValidHost propagates: the step wrapper reports it and the conductor records the fault.
        selection = schedule_with(CACHE, s, spec, get_settings().max_attempts)
    return {**ctx, "hosts": selection.hosts, "explanation": selection.explanation}
