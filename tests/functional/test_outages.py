"""Outages during a storm of boots: the broker (a private, durable redis-server; a private RabbitMQ node)
restarted, the database (a private PostgreSQL cluster) stopped for 10 s. Every boot that got 202 ends ACTIVE, every refusal is a 503 with
Retry-After (never a 500 or a dropped connection), nothing stays in a transitional state, nothing is orphaned.
Private servers, so the shared ones other test runs use are never touched."""
from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time

import pytest
import requests

from tests.outage_support import (Client, PrivateBackend, PrivatePostgres, PrivateRabbitMQ, PrivateRedis, audit,
                                  query)
from harness.stack import Stack

pytestmark = pytest.mark.slow

CLIENTS = 6


@dataclasses.dataclass
class Attempt:
    sent: float
    done: float
    status: int  # 0: no HTTP answer at all
    server_id: str | None
    retry_after: str | None


def storm(api: Client, image: str, total: int, prefix: str, stop: threading.Event,
          through: threading.Event) -> tuple[list[Attempt], threading.Thread]:
    """Boot from CLIENTS threads, one request at a time each, until ``total`` boots were accepted (refused ones
    are not retried, new ones are sent) and ``through`` is set (the caller sets it once the outage is over and a
    boot was accepted again: fast boots must not end the storm before the outage began); returns the attempts
    list (filled as they finish) and a thread to join."""
    attempts: list[Attempt] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 600

    def client(k: int) -> None:
        for i in itertools.count(k, CLIENTS):
            with lock:
                if ((sum(a.status == 202 for a in attempts) >= total and through.is_set())
                        or time.monotonic() > deadline or stop.is_set()):
                    return
            sent = time.monotonic()
            try:
                r = api.boot(image, f"{prefix}-{i}", timeout=90)
                a = Attempt(sent, time.monotonic(), r.status_code,
                            r.json()["server"]["id"] if r.status_code == 202 else None, r.headers.get("Retry-After"))
            except requests.RequestException:
                a = Attempt(sent, time.monotonic(), 0, None, None)
            with lock:
                attempts.append(a)
            if a.status == 503:
                time.sleep(1)  # a polite client backs off (a shorter wait than Retry-After keeps the test short)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()

    def join_all() -> None:
        for t in threads:
            t.join()
    return attempts, threading.Thread(target=join_all)


def first_ok_after_exists(attempts: list[Attempt], t_up: float) -> bool:
    return any(a.status == 202 and a.sent >= t_up for a in attempts)


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def check_guarantees(stack: Stack, api: Client, attempts: list[Attempt], t_down: float, t_up: float) -> None:
    by_status = collections.Counter(a.status for a in attempts)
    print(f"\nanswers: {dict(by_status)}; slowest answer {max(a.done - a.sent for a in attempts):.1f} s")
    assert set(by_status) <= {202, 503}, by_status
    assert by_status[503] > 0, "the outage was never seen by a client: the test proved nothing"
    assert all(a.retry_after for a in attempts if a.status == 503), "a 503 without Retry-After"
    accepted = {a.server_id for a in attempts if a.status == 202}
    assert first_ok_after_exists(attempts, t_up), "no boot was accepted after the service came back"
    refused_window = [a for a in attempts if a.status == 503]
    first_refusal = min(a.done for a in refused_window)
    first_ok_after = min((a.done for a in attempts if a.status == 202 and a.sent >= t_up), default=None)
    t0 = time.monotonic()
    final = api.wait_settled(accepted, timeout=300)
    settle = time.monotonic() - t0
    statuses = collections.Counter(s["status"] for s in final.values())
    print(f"outage-to-recovery: {(first_ok_after - t_down) if first_ok_after else float('nan'):.1f} s from the "
          f"stop to the first boot accepted again")
    print(f"outage {t_up - t_down:.1f} s; first 503 {first_refusal - t_down:+.1f} s after it began; first 202 "
          f"{(first_ok_after - t_up) if first_ok_after else float('nan'):.1f} s after the service came back; "
          f"every accepted boot settled {settle:.1f} s after the storm ended: {dict(statuses)}")
    assert set(final) == accepted, "a boot that got 202 disappeared"
    bad = {i: (s["status"], s.get("fault")) for i, s in final.items() if s["status"] != "ACTIVE"}
    resumed = stack.log("conductor").count("its step was sent again")
    print(f"{resumed} boot(s) resumed by resume_stalled_builds (their step message was lost)")
    if bad:
        _print_traces(stack, bad)
    assert not bad, f"accepted boots that did not end ACTIVE: {bad}"
    # Servers the client never heard about (a 503 whose request did reach the conductor) must not be stuck.
    extra = {s["id"]: s for s in api.servers() if s["id"] not in accepted}
    api.wait_settled(set(extra), timeout=120)
    print(f"{len(extra)} server(s) exist for requests answered 503 (their outcome was unknown to the client)")
    assert query(stack, "SELECT count(*) FROM instances WHERE deleted = 0 AND task_state IS NOT NULL") == [(0,)]
    assert audit(stack).returncode == 0, "an allocation without a live instance"


def _print_traces(stack: Stack, uuids) -> None:
    """Every log line of the stack's processes that names one of ``uuids``, plus their warnings and errors: the
    stack's logs are deleted with it, and a boot lost across a broker restart is rare."""
    for name in ("api", "conductor", "scheduler", "compute", "beat"):
        lines = stack.log(name).splitlines()
        hits = [ln for ln in lines if any(u in ln for u in uuids) or "WARNING" in ln or "ERROR" in ln
                or "CRITICAL" in ln]
        print(f"--- {name}.log ({len(hits)} of {len(lines)} lines) ---\n" + "\n".join(hits[-300:]))


def _stack_env() -> dict[str, str]:
    # A boot whose step message the broker lost is sent again by beat's resume_stalled_builds after 60 s.
    # Room for a storm that outlasts a slow broker stop: a RabbitMQ node confirms publishes while it stops, which
    # took up to 60 s on a loaded machine, and ten clients had ~1,000 boots accepted meanwhile (quota and the fake
    # host's capacity must not be what refuses them).
    return {"STRATUS_QUOTA_INSTANCES": "10000", "STRATUS_QUOTA_CORES": "10000", "STRATUS_QUOTA_RAM": "10000000",
            "STRATUS_FAKE_VCPUS": "1024", "STRATUS_FAKE_MEMORY_MB": "1048576",
            "STRATUS_BROKER_VISIBILITY_TIMEOUT": "30",
            "STRATUS_STALLED_BUILD_RESUME_AFTER": "60"}


PROCESSES = ("api", "conductor", "scheduler", "compute", "beat")  # beat: the periodic tasks, as in production


def _boots_across_a_broker_restart(tmp_path_factory, broker, name: str, prefix: str) -> None:
    """At least 100 boots from concurrent clients, the storm lasting through the outage; after 25 requests the
    (private, started) broker is stopped for ~8 s and started again. Reads work meanwhile; every 202 ends ACTIVE
    and every refusal is a 503 (check_guarantees)."""
    stop = threading.Event()
    stack = Stack(tmp_path_factory.mktemp(f"{name}-outage"),
                  PrivateBackend(f"sqlite-private-{name}", "sqlite", name, mq_url=broker.url), extra_env=_stack_env(),
                  processes=PROCESSES)
    try:
        stack.start()
        api = Client(stack)
        image = api.image()
        through = threading.Event()
        attempts, done = storm(api, image, 100, prefix, stop, through)
        wait_until(lambda: len(attempts) >= 25, 120)
        t_down = time.monotonic()
        broker.stop()
        time.sleep(1)
        listed = requests.get(f"{api.url}/servers/detail", headers=api.headers, timeout=30)
        assert listed.status_code == 200, listed.text  # reads need no broker
        time.sleep(max(0.0, 8 - (time.monotonic() - t_down)))
        broker.start()
        t_up = time.monotonic()
        wait_until(lambda: first_ok_after_exists(attempts, t_up), 120)
        through.set()
        done.start()
        done.join()
        check_guarantees(stack, api, attempts, t_down, t_up)
    finally:
        stop.set()
        stack.stop()


def test_redis_restart_during_100_boots(tmp_path_factory):
    missing = PrivateRedis.available()
    if missing:
        pytest.skip(f"!!! PRIVATE REDIS UNAVAILABLE: {missing} !!!")
    redis = PrivateRedis(durable=True)
    try:
        redis.start()
        _boots_across_a_broker_restart(tmp_path_factory, redis, "redis", "rd")
    finally:
        redis.close()


def test_rabbitmq_restart_during_100_boots(tmp_path_factory):
    """Durable queues, persistent messages, publisher confirms (celeryconfig.py): a node stopped cleanly for
    ~8 s and started again keeps every message it confirmed, and every client reconnects."""
    missing = PrivateRabbitMQ.available()
    if missing:
        pytest.skip(f"!!! PRIVATE RABBITMQ UNAVAILABLE: {missing} !!!")
    rabbit = PrivateRabbitMQ()
    try:
        rabbit.start()
        _boots_across_a_broker_restart(tmp_path_factory, rabbit, "rabbitmq", "rq")
    finally:
        rabbit.close()


def test_postgresql_down_10s_during_boots(tmp_path_factory):
    for missing in (PrivatePostgres.available(), PrivateRedis.available()):
        if missing:
            pytest.skip(f"!!! PRIVATE SERVICE UNAVAILABLE: {missing} !!!")
    pg, redis = PrivatePostgres(), PrivateRedis(durable=False)
    redis.start()
    stop = threading.Event()
    try:
        db_url = pg.init()
        stack = Stack(tmp_path_factory.mktemp("pg-outage"), PrivateBackend("private-pg-redis", "postgresql", "redis",
                                                                         db_url=db_url, mq_url=redis.url),
                      extra_env=_stack_env(), processes=PROCESSES)
        try:
            stack.start()
            api = Client(stack)
            image = api.image()
            through = threading.Event()
            attempts, done = storm(api, image, 60, "pg", stop, through)
            wait_until(lambda: len(attempts) >= 15, 120)
            t_down = time.monotonic()
            pg.stop("fast")
            time.sleep(1)
            listed = requests.get(f"{api.url}/servers/detail", headers=api.headers, timeout=30)
            assert listed.status_code == 503 and listed.headers.get("Retry-After"), (listed.status_code,
                                                                                     listed.text)
            time.sleep(10 - (time.monotonic() - t_down))
            pg.start()
            t_up = time.monotonic()
            wait_until(lambda: first_ok_after_exists(attempts, t_up), 120)
            through.set()
            done.start()
            done.join()
            check_guarantees(stack, api, attempts, t_down, t_up)
        finally:
            stop.set()
            stack.stop()
    finally:
        pg.close()
        redis.close()
