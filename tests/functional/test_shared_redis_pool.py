"""tasks/messaging/shared_redis.py on a private Redis: one connection for every command of the process, taken in turn
by threads, again by the thread that holds it (kombu's restore transaction reads a binding table inside its WATCH),
shared by kombu's channels and the result backend of the same server."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from celery import Celery
from kombu import Connection

from tasks.messaging import kombu_fixes, shared_redis
from tests.outage_support import PrivateRedis

pytestmark = pytest.mark.services

OPTIONS = {"priority_steps": [0], "client_name": "shared"}


@pytest.fixture(scope="module")
def server():
    missing = PrivateRedis.available()
    if missing:
        pytest.skip(f"!!! PRIVATE REDIS UNAVAILABLE: {missing} !!!")
    srv = PrivateRedis(durable=False)
    srv.start()
    yield srv
    srv.close()


def _clients(server, name: str) -> int:
    return sum(1 for c in redis.Redis(port=server.port).client_list() if c["name"] == name)


def test_a_command_inside_a_watch_of_the_same_thread_does_not_wait_for_itself(server, monkeypatch):
    monkeypatch.setattr(shared_redis, "WAIT_MAX", 2.0)
    pool = shared_redis.SharedPool(host="127.0.0.1", port=server.port, db=3)
    client = redis.Redis(connection_pool=pool)
    client.sadd("table", "a")

    def restore(pipe) -> None:  # kombu's restore_transaction: a table lookup on another client, same pool
        pipe.hget("unacked", "tag")
        assert redis.Redis(connection_pool=pool).smembers("table") == {b"a"}
        pipe.multi()
        pipe.lpush("queue", "m")

    client.transaction(restore, "unacked")
    assert client.llen("queue") == 1
    assert len(pool._connections) == 1


def test_threads_take_the_one_connection_in_turn(server):
    pool = shared_redis.SharedPool(host="127.0.0.1", port=server.port, db=3, client_name="threads")

    def work(n: int) -> None:
        client = redis.Redis(connection_pool=pool)
        for i in range(200):
            client.rpush(f"list-{n}", i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(redis.Redis(port=server.port, db=3).llen(f"list-{n}") == 200 for n in range(8))
    assert _clients(server, "threads") == 1


def test_kombu_channels_and_the_result_backend_share_one_connection(server):
    kombu_fixes.apply()  # as every Stratus process: a channel closes its start-up PING's connection
    app = Celery("shared-probe", broker=server.url, backend=server.url)
    app.conf.update(broker_transport_options=OPTIONS, redis_client_name="shared")
    assert shared_redis.install(app)
    conns = [Connection(server.url, transport=shared_redis.TRANSPORT, transport_options=OPTIONS) for _ in range(3)]
    try:
        for n, conn in enumerate(conns):
            with conn.Producer() as producer:
                producer.publish({"n": n}, routing_key=f"q{n}", declare=[])
        app.backend.store_result("task-id", {"ok": 1}, "SUCCESS")
        time.sleep(0.2)
        assert _clients(server, "shared") == 1
        assert app.backend.get_task_meta("task-id")["result"] == {"ok": 1}
    finally:
        for conn in conns:
            conn.release()
        app.close()


def test_another_server_or_database_gets_a_pool_of_its_own(server):
    a = shared_redis.shared_pool(host="127.0.0.1", port=server.port, db=1)
    assert shared_redis.shared_pool(host="127.0.0.1", port=server.port, db=1, max_connections=10) is a
    assert shared_redis.shared_pool(host="127.0.0.1", port=server.port, db=2) is not a
    assert shared_redis.shared_pool(host="127.0.0.1", port=server.port + 1, db=1) is not a
