"""Servers' bodies as one request shows them: ServerView (app/compute/views.py) fed with what other tables hold,
read for all the listed servers at once: the latest fault, the host's status (admins, 2.16), the addresses, the
server group (2.71) and the tags (2.26)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.compute import instance_tags
from app.compute.views import ServerView
from app.context import RequestContext
from app.microversion import current as api_version
from core.db import plain_rows
from core.models import FixedIP, Instance, InstanceFault, InstanceGroup, InstanceGroupMember, Network, Service, utcnow
from core.services import COMPUTE_BINARY, service_is_up


def render(s: Session, instances: list[Instance], ctx: RequestContext, show: bool = False,
           **view_options: bool | None) -> list[dict]:
    """The bodies of ``instances``; ``view_options`` are ServerView's (what an update or rebuild leaves out)."""
    faults = latest_faults(s, [i.uuid for i in instances if i.vm_state in ("error", "deleted")])
    v = api_version()
    view = ServerView(v, ctx, show, **view_options)
    statuses = host_statuses(s, {i.host for i in instances if i.host}) if view.host_status else {}
    addresses = server_addresses(s, [i.uuid for i in instances])
    groups = server_groups_of(s, [i.uuid for i in instances]) if show and v.matches("2.71") else {}
    tags = instance_tags.tags_of(s, [i.uuid for i in instances]) if v.matches(instance_tags.MIN_VERSION) else {}
    return [view.body(i, faults.get(i.uuid), statuses.get(i.host or "", "UNKNOWN" if i.host else ""),
                      addresses=addresses.get(i.uuid), server_groups=groups.get(i.uuid, []), tags=tags.get(i.uuid))
            for i in instances]


def latest_faults(s: Session, uuids: list[str]) -> dict[str, InstanceFault]:
    if not uuids:
        return {}
    newest = (select(InstanceFault.instance_uuid, func.max(InstanceFault.id).label("fid"))
              .where(InstanceFault.instance_uuid.in_(uuids)).group_by(InstanceFault.instance_uuid).subquery())
    rows = s.scalars(select(InstanceFault).join(newest, InstanceFault.id == newest.c.fid))
    return {f.instance_uuid: f for f in rows}


def host_statuses(s: Session, hosts: set[str]) -> dict[str, str]:
    if not hosts:
        return {}
    now = utcnow()
    out = {}
    for svc in s.scalars(select(Service).where(Service.host.in_(hosts), Service.binary == COMPUTE_BINARY)):
        out[svc.host] = host_status(svc, now)
    return out


def host_status(svc: Service, now: dt.datetime) -> str:
    """Nova's order (compute API get_instance_host_status): forced down is DOWN, disabled is MAINTENANCE, a
    service whose heartbeats stopped is UNKNOWN (the host may be fine and only cut off), else UP."""
    if svc.forced_down:
        return "DOWN"
    if svc.disabled:
        return "MAINTENANCE"
    return "UP" if service_is_up(svc, now) else "UNKNOWN"


def server_groups_of(s: Session, uuids: list[str]) -> dict[str, list[str]]:
    """The server group (a list of at most one uuid, as Nova shows it from 2.71) of each instance."""
    rows = plain_rows(s, select(InstanceGroupMember.instance_uuid, InstanceGroup.uuid)
                     .join(InstanceGroup, InstanceGroup.id == InstanceGroupMember.group_id)
                     .where(InstanceGroupMember.instance_uuid.in_(uuids)))
    return {inst: [group] for inst, group in rows}


def server_addresses(s: Session, uuids: list[str]) -> dict[str, dict]:
    """Nova's "addresses" per instance: {network name: [{version, addr, OS-EXT-IPS:type, ...mac_addr}]}."""
    if not uuids:
        return {}
    out: dict[str, dict] = {}
    rows = plain_rows(s, select(FixedIP.instance_uuid, FixedIP.address, FixedIP.mac, Network.name)
                     .join(Network, Network.id == FixedIP.network_id)
                     .where(FixedIP.instance_uuid.in_(uuids)).order_by(FixedIP.id))
    for uuid, address, mac, name in rows:
        out.setdefault(uuid, {}).setdefault(name, []).append(
            {"version": 4, "addr": address, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac})
    return out
