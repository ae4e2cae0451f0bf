"""host_status (2.16) in Nova's order: forced down → DOWN, disabled → MAINTENANCE, no heartbeat → UNKNOWN, else UP."""
from __future__ import annotations

import datetime as dt

import pytest

from app.compute.server_bodies import host_status
from core.models import Service, utcnow


@pytest.mark.parametrize("forced_down, disabled, seen_ago, expected", [
    (False, False, 1, "UP"),
    (False, False, 3600, "UNKNOWN"),   # heartbeats stopped: cut off or dead, nobody knows which
    (False, False, None, "UNKNOWN"),   # never reported
    (True, False, 1, "DOWN"),          # an operator said so (os-services force-down)
    (True, True, 1, "DOWN"),
    (False, True, 3600, "MAINTENANCE"),
])
def test_host_status_follows_novas_order(forced_down, disabled, seen_ago, expected):
    now = utcnow()
    svc = Service(host="h", binary="nova-compute", forced_down=forced_down, disabled=disabled,
                  last_seen_at=None if seen_ago is None else now - dt.timedelta(seconds=seen_ago))
    assert host_status(svc, now) == expected
