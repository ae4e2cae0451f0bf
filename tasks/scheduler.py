"""Scheduler task (queue ``scheduler``): read host states, run scheduler.manager, pass the hosts on."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.db import read_session
from app.models import ComputeNode, Instance, Service, utcnow
from app.settings import get_settings
from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import select_destinations
from tasks.celery_app import celery
from tasks.common import StopCanvas, step
from tasks import states


def load_host_states(session) -> list[HostState]:
    cfg = get_settings()
    cutoff = utcnow() - dt.timedelta(seconds=cfg.service_down_time)
    rows = session.execute(select(ComputeNode, Service).join(Service, ComputeNode.service_id == Service.id))
    return [HostState(host=n.host, node_id=n.id, availability_zone=n.availability_zone,
                      enabled=not svc.disabled, up=(not svc.forced_down and svc.last_seen_at is not None
                                                    and svc.last_seen_at >= cutoff),
                      vcpus=n.vcpus, memory_mb=n.memory_mb, local_gb=n.local_gb, vcpus_used=n.vcpus_used,
                      memory_mb_used=n.memory_mb_used, local_gb_used=n.local_gb_used,
                      cpu_allocation_ratio=n.cpu_allocation_ratio, ram_allocation_ratio=n.ram_allocation_ratio,
                      disk_allocation_ratio=n.disk_allocation_ratio, running_vms=n.running_vms)
            for n, svc in rows]


@celery.task(name="stratus.scheduler.schedule")
@step
def schedule(ctx: dict) -> dict:
    with read_session() as s:
        inst = s.scalars(select(Instance).where(Instance.uuid == ctx["instance_uuid"],
                                                Instance.deleted == 0)).first()
        if inst is None or inst.task_state != states.SCHEDULING:
            raise StopCanvas("instance is no longer scheduling")
        spec = RequestSpec(instance_uuid=inst.uuid, vcpus=inst.vcpus, memory_mb=inst.memory_mb,
                           root_gb=inst.root_gb, availability_zone=inst.requested_availability_zone,
                           ignore_hosts=frozenset(h for h in ctx.get("tried", []) if h),
                           scheduler_hints=inst.scheduler_hints or {})
        hosts = load_host_states(s)
    # NoValidHost propagates: the step wrapper reports it and the conductor records the fault.
    selection = select_destinations(hosts, spec, max_attempts=get_settings().max_attempts)
    return {**ctx, "hosts": selection.hosts, "explanation": selection.explanation}
