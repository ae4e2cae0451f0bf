"""/os-availability-zone: the zones of the compute hosts (an aggregate's zone, else the node's own) and, in the
detail admins see, the services of each host; other services are in the "internal" zone."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from app.compute.views import iso_usec
from app.policy import enforce
from core.db import read_session
from core.host_zones import effective_zones
from core.models import Service
from core.services import service_is_up

bp = Blueprint("availability_zones", __name__)


def _zones() -> dict[str, dict[str, list[Service]]]:
    """Zone → host → services; compute hosts are in their (aggregate) zone, other services in 'internal'."""
    with read_session() as s:
        host_zone = effective_zones(s)
        services = list(s.scalars(select(Service).order_by(Service.host, Service.binary)))
    zones: dict[str, dict[str, list[Service]]] = {}
    for svc in services:
        zone = host_zone.get(svc.host, "internal") if svc.binary.endswith("compute") else "internal"
        zones.setdefault(zone, {}).setdefault(svc.host, []).append(svc)
    return zones


def _available(hosts: dict[str, list[Service]]) -> bool:
    return any(not svc.disabled for services in hosts.values() for svc in services)


@bp.get("/os-availability-zone")
@enforce("authenticated", name="os_compute_api:os-availability-zone:list",
         description="List availability zone information without host information")
def availability_zones():
    zones = {z: h for z, h in _zones().items() if z != "internal"}
    return jsonify({"availabilityZoneInfo": [{"zoneName": z, "zoneState": {"available": _available(h)},
                                              "hosts": None} for z, h in sorted(zones.items())]})


@bp.get("/os-availability-zone/detail")
@enforce("admin_api", name="os_compute_api:os-availability-zone:detail",
         description="List detailed availability zone information with host information")
def availability_zones_detail():
    info = []
    for zone, hosts in sorted(_zones().items()):
        info.append({"zoneName": zone, "zoneState": {"available": _available(hosts)}, "hosts": {
            host: {svc.binary: {"available": not svc.disabled, "active": service_is_up(svc),
                                "updated_at": iso_usec(svc.updated_at)} for svc in services}
            for host, services in hosts.items()}})
    return jsonify({"availabilityZoneInfo": info})
