"""Scheduler task (queue ``scheduler``): read host states, run scheduler.manager, pass the hosts on."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.db import read_session
from app.host_zones import AZ_KEY, aggregate_metadata_by_host
from app.models import ComputeNode, Instance, Service, utcnow
from app.settings import get_settings
from scheduler.host_state import HostState, RequestSpec
from scheduler.manager import select_destinations
from tasks.celery_app import celery
from tasks.common import StopCanvas, step
from tasks import states


def load_host_states(session) -> list[HostState]:
    """One Core query of plain columns (no ORM objects): the cost of a decision is mostly this load."""
    cfg = get_settings()
    cutoff = utcnow() - dt.timedelta(seconds=cfg.service_down_time)
    n, svc = ComputeNode, Service
    rows = session.execute(select(
        n.host, n.id, n.availability_zone, svc.disabled, svc.forced_down, svc.last_seen_at, n.vcpus, n.memory_mb,
        n.local_gb, n.vcpus_used, n.memory_mb_used, n.local_gb_used, n.cpu_allocation_ratio,
        n.ram_allocation_ratio, n.disk_allocation_ratio, n.running_vms).join(svc, n.service_id == svc.id))
    # Aggregates: an aggregate's availability zone overrides the node's own; filters read all their metadata.
    metadata = aggregate_metadata_by_host(session)
    return [HostState(host=host, node_id=node_id, availability_zone=_zone(metadata.get(host), az),
                      enabled=not disabled, aggregate_metadata=metadata.get(host, {}),
                      up=not forced_down and seen is not None and seen >= cutoff, vcpus=vcpus, memory_mb=ram,
                      local_gb=disk, vcpus_used=vcpus_used, memory_mb_used=ram_used, local_gb_used=disk_used,
                      cpu_allocation_ratio=cpu_ratio, ram_allocation_ratio=ram_ratio,
                      disk_allocation_ratio=disk_ratio, running_vms=running)
            for (host, node_id, az, disabled, forced_down, seen, vcpus, ram, disk, vcpus_used, ram_used, disk_used,
                 cpu_ratio, ram_ratio, disk_ratio, running) in rows]


def _zone(metadata: dict[str, frozenset[str]] | None, own: str) -> str:
    zones = (metadata or {}).get(AZ_KEY)
    return min(zones) if zones else own


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
                           scheduler_hints=inst.scheduler_hints or {}, project_id=inst.project_id,
                           extra_specs=dict((inst.flavor_snapshot or {}).get("extra_specs") or {}))
        hosts = load_host_states(s)
    # NoValidHost propagates: the step wrapper reports it and the conductor records the fault.
    selection = select_destinations(hosts, spec, max_attempts=get_settings().max_attempts)
    return {**ctx, "hosts": selection.hosts, "explanation": selection.explanation}
