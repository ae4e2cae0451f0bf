"""bench/many_hosts.py's own measuring parts (the full run is a benchmark, not a test): the broker-connection count
of a process session against the shared Redis server, and the task counts and times read from a worker's log."""
from __future__ import annotations

import os

import pytest
import redis

from bench.many_hosts import broker_connections, scheduler_times, tasks_between
from harness.stack import _port_open


@pytest.mark.skipif(not _port_open(6379), reason="!!! REDIS IS NOT RUNNING ON 127.0.0.1:6379 !!!")
def test_broker_connections_counts_this_sessions_redis_sockets():
    sid = os.getsid(0)
    before = broker_connections(sid)
    clients = [redis.Redis(host="127.0.0.1", port=6379, db=0) for _ in range(2)]
    try:
        for c in clients:
            c.ping()  # connects
        assert broker_connections(sid) == before + 2
        assert broker_connections(sid, port=1) == 0  # another port: none
    finally:
        for c in clients:
            c.close()
    assert broker_connections(sid) == before


LOG = """\
[2026-12-07 14:36:21,900: INFO/MainProcess] Task stratus.conductor.report_service[a-1] succeeded in 0.004s: None
[2026-12-07 14:36:22,001: INFO/MainProcess] Task stratus.conductor.report_service[a-2] succeeded in 0.005s: None
[2026-12-07 14:36:30,500: INFO/MainProcess] Task stratus.conductor.heartbeat[a-3] received
[2026-12-07 14:36:30,510: INFO/MainProcess] Task stratus.conductor.heartbeat[a-3] succeeded in 0.01s: None
[2026-12-07 14:36:40,000: INFO/MainProcess] Task stratus.scheduler.schedule[b-1] succeeded in 0.0125s: {'x': 1}
[2026-12-07 14:37:22,000: INFO/MainProcess] Task stratus.conductor.report_service[a-4] succeeded in 0.004s: None
"""


def test_tasks_between_counts_finished_tasks_in_the_window_by_name():
    assert tasks_between(LOG, "2026-12-07 14:36:22", "2026-12-07 14:37:22") == {
        "stratus.conductor.report_service": 1, "stratus.conductor.heartbeat": 1, "stratus.scheduler.schedule": 1}


def test_scheduler_times_reads_the_schedule_tasks_own_time():
    assert scheduler_times(LOG) == [0.0125]
