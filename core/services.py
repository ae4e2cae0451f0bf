"""Whether a service is up: its last heartbeat is within ``service_down_time`` and it is not forced down (Nova's
servicegroup DB driver). Read by the API's service and availability-zone views and by the conductor's moves."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Service, utcnow
from core.settings import get_settings

# The services' binaries as the API (and Nova's clients: ``os-services?binary=nova-compute``) names them; the
# processes keep Stratus's names (the Procfile, Flower).
COMPUTE_BINARY = "nova-compute"
CONDUCTOR_BINARY = "nova-conductor"
SCHEDULER_BINARY = "nova-scheduler"
# Which process consumes which queue (the conductor's and the scheduler's heartbeats name their row by it).
BINARY_OF_QUEUE = {"conductor": CONDUCTOR_BINARY, "scheduler": SCHEDULER_BINARY}


def service_is_up(svc: Service, now: dt.datetime | None = None) -> bool:
    cutoff = (now or utcnow()) - dt.timedelta(seconds=get_settings().service_down_time)
    return not svc.forced_down and svc.last_seen_at is not None and svc.last_seen_at >= cutoff


def compute_service_up(s: Session, host: str) -> bool:
    """Whether the compute service of ``host`` is up (False when the host has none)."""
    svc = s.scalars(select(Service).where(Service.host == host, Service.binary == COMPUTE_BINARY)).first()
    return svc is not None and service_is_up(svc)
