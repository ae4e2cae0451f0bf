"""Whether a service is up, as Nova's database service group driver decides: not forced down, and a heartbeat
within ``service_down_time`` seconds. The API shows it (os-services, os-hypervisors, availability zones, a
server's host_status) and the conductor checks it before a move."""
from __future__ import annotations

import datetime as dt

from core.models import Service, utcnow
from core.settings import get_settings


def service_is_up(svc: Service, now: dt.datetime | None = None) -> bool:
    cutoff = (now or utcnow()) - dt.timedelta(seconds=get_settings().service_down_time)
    return not svc.forced_down and svc.last_seen_at is not None and svc.last_seen_at >= cutoff
