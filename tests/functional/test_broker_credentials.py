"""Per-host broker credentials (tools/compute-credentials, tasks/messaging/broker_users.py) on a private RabbitMQ
node and a private redis-server: host A's user consumes compute.A and publishes to conductor, and is refused
reading compute.B or conductor (RabbitMQ 403 ACCESS_REFUSED, Redis NOPERM); a whole stack boots and deletes a
server on a compute worker that has only that user. Private servers: the machine's shared ones are not changed."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kombu import Connection, Exchange, Producer, Queue

from harness.stack import REPO, Stack
from tasks.messaging import broker_users
from tests.outage_support import Client, PrivateBackend, PrivateRabbitMQ, PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]

REFUSED = ("ACCESS_REFUSED", "NOPERM", "AccessRefused", "NoPermission")
REDIS_OPTIONS = {"priority_steps": [0]}  # as celeryconfig.py: one list per queue


class Broker:
    """A private broker and how to make a host's user on it (as the tool does)."""

    def __init__(self, kind: str, server: PrivateRabbitMQ | PrivateRedis):
        self.kind, self.server = kind, server

    @property
    def admin_url(self) -> str:
        return self.server.url

    def rabbitmqctl(self) -> list[str]:
        env = self.server.env  # type: ignore[union-attr]
        private = [f"{k}={v}" for k, v in env.items() if os.environ.get(k) != v]
        return ["env", *private, str(PrivateRabbitMQ.SBIN / "rabbitmqctl"), "-n", self.server.node]  # type: ignore

    def tool(self, host: str, *extra: str) -> subprocess.CompletedProcess:
        args = [str(REPO / "tools" / "compute-credentials"), host, "--admin-url", self.admin_url, *extra]
        if self.kind == "rabbitmq":
            args += ["--rabbitmqctl", shlex.join(self.rabbitmqctl())]
        return subprocess.run(args, capture_output=True, text=True, timeout=180)

    def host_url(self, host: str) -> str:
        made = self.tool(host)
        assert made.returncode == 0, made.stdout + made.stderr
        line = [x for x in made.stdout.splitlines() if x.startswith("STRATUS_BROKER_URL=")][-1]
        return line.partition("=")[2]

    def connection(self, url: str) -> Connection:
        return Connection(url, transport_options=REDIS_OPTIONS if self.kind == "redis" else {},
                          connect_timeout=5)


@pytest.fixture(scope="module", params=["rabbitmq", "redis"])
def broker(request) -> Iterator[Broker]:
    cls = PrivateRabbitMQ if request.param == "rabbitmq" else PrivateRedis
    missing = cls.available()
    if missing:
        pytest.skip(f"!!! PRIVATE {request.param.upper()} UNAVAILABLE: {missing} !!!")
    server = cls() if cls is PrivateRabbitMQ else PrivateRedis(durable=False)
    try:
        server.start()
        yield Broker(request.param, server)
    finally:
        server.close()


def _queue(name: str, no_declare: bool = False) -> Queue:
    return Queue(name, Exchange(name), routing_key=name, no_declare=no_declare)


def _refused(broker: Broker, url: str, action) -> str:
    """Run ``action(channel)`` on a fresh connection of ``url``; the broker's refusal as text (fails if none)."""
    with broker.connection(url) as conn:
        channel = conn.channel()
        try:
            action(channel)
        except Exception as exc:  # amqp.exceptions.AccessRefused, redis NoPermissionError
            text = f"{type(exc).__name__}: {exc}"
            assert any(r in text for r in REFUSED), text
            return text
    raise AssertionError("the broker allowed it")


def test_host_user_reaches_its_queue_and_conductor_only(broker):
    admin = broker.admin_url
    with broker.connection(admin) as conn:  # the controller's workers declare these
        for name in ("conductor", "compute.b"):
            _queue(name)(conn.channel()).declare()
        Producer(conn.channel()).publish({"for": "b"}, exchange="compute.b", routing_key="compute.b")
    url_a = broker.host_url("a")
    assert "compute-a" in url_a and url_a != admin

    with broker.connection(url_a) as conn:
        own = _queue("compute.a")(conn.channel())
        own.declare()
        Producer(conn.channel()).publish({"for": "a"}, exchange="compute.a", routing_key="compute.a")
        Producer(conn.channel()).publish({"report": "a"}, exchange="conductor", routing_key="conductor")
        # A move's next step runs on the destination host: published to its queue, not declared.
        Producer(conn.channel()).publish({"move": "a"}, exchange="compute.b", routing_key="compute.b")
        got = _wait_get(own)
        assert got.payload == {"for": "a"}
        got.ack()
    with broker.connection(admin) as conn:
        reported = _wait_get(_queue("conductor")(conn.channel()))
        assert reported.payload == {"report": "a"}
        reported.ack()

    for queue in ("compute.b", "conductor"):
        _refused(broker, url_a, lambda ch, q=queue: ch.basic_get(q, no_ack=True))
        _refused(broker, url_a, lambda ch, q=queue: _queue(q)(ch).declare())  # no configure / binding write
    # Host B's message is still there, for B.
    url_b = broker.host_url("b")
    with broker.connection(url_b) as conn:
        theirs = _queue("compute.b")(conn.channel())
        assert [_wait_get(theirs).payload, _wait_get(theirs).payload] == [{"for": "b"}, {"move": "a"}]
        _refused(broker, url_b, lambda ch: ch.basic_get("compute.a", no_ack=True))
    if broker.kind == "rabbitmq":  # the wording the stack test looks for in the node's log
        assert "refused for user 'compute-a'" in _node_log(broker)

    # Idempotent: a second run changes the password (the old URL stops working), --remove deletes the user.
    url_a2 = broker.host_url("a")
    assert url_a2 != url_a
    with broker.connection(url_a2) as conn:
        conn.connect()
    with pytest.raises(Exception):
        with broker.connection(url_a) as conn:
            conn.connect()
    removed = broker.tool("a", "--remove")
    assert removed.returncode == 0 and "removed compute-a" in removed.stdout, removed.stdout + removed.stderr
    with pytest.raises(Exception):
        with broker.connection(url_a2) as conn:
            conn.connect()
    assert "did not exist" in broker.tool("a", "--remove").stdout


def _wait_get(queue: Queue, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = queue.get(no_ack=False)
        if message is not None:
            return message
        time.sleep(0.1)
    raise AssertionError(f"nothing in {queue.name}")


def test_stack_boots_and_migrates_on_compute_workers_with_their_own_users(broker, tmp_path):
    """API, conductor and scheduler with the admin's URL; two compute workers (hosts cred-a, cred-b), each with
    its own host's user only: they register, build, answer the liveness broadcast, cold-migrate a server from
    one to the other (the move's chain goes from host to host) and delete it, with no refusal anywhere."""
    hosts = ("cred-a", "cred-b")
    backend = PrivateBackend(f"sqlite-private-{broker.kind}", "sqlite", broker.kind, mq_url=broker.admin_url)
    stack = Stack(tmp_path / "stack", backend, compute_hosts=",".join(hosts),
                  processes=("api", "conductor", "scheduler"))
    if broker.kind == "redis":
        import redis
        with redis.Redis.from_url(broker.admin_url) as client:
            client.execute_command("ACL", "LOG", "RESET")  # the other tests' refusals
    try:
        stack.start()
        for host in hosts:
            env = {**stack.env, **stack.compute_env(), "STRATUS_BROKER_URL": broker.host_url(host),
                   "STRATUS_COMPUTE_HOSTS": host}
            log = open(stack.state_dir / f"compute-{host}.log", "ab")
            stack.procs[f"compute-{host}"] = subprocess.Popen(
                [sys.executable, "-m", "tasks.compute_worker"], cwd=REPO, env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        _wait(lambda: stack.registered_hosts() >= 2, 60, stack)
        api = Client(stack)
        booted = api.boot(api.image(), "cred")
        assert booted.status_code == 202, booted.text
        server_id = booted.json()["server"]["id"]
        settled = api.wait_settled({server_id}, 90)[server_id]
        _check_compute(stack)
        assert settled["status"] == "ACTIVE", settled
        source = settled["OS-EXT-SRV-ATTR:host"]
        dest = next(h for h in hosts if h != source)
        for host in hosts:
            assert _consuming(broker.admin_url, f"compute.{host}"), host

        action = f"{api.url}/servers/{server_id}/action"
        moved = requests.post(action, headers=api.headers, json={"migrate": {"host": dest}}, timeout=60)
        assert moved.status_code == 202, moved.text
        resized = api.wait_settled({server_id}, 90)[server_id]
        assert resized["status"] == "VERIFY_RESIZE" and resized["OS-EXT-SRV-ATTR:host"] == dest, resized
        confirmed = requests.post(action, headers=api.headers, json={"confirmResize": None}, timeout=60)
        assert confirmed.status_code == 204, confirmed.text
        assert api.wait_settled({server_id}, 90)[server_id]["status"] == "ACTIVE"

        assert api.delete(server_id) == 204
        assert not api.wait_gone(60)
        _check_compute(stack)
        text = "".join(stack.log(f"compute-{h}") for h in hosts)
        assert not [r for r in REFUSED if r in text], text[-5000:]
        if broker.kind == "rabbitmq":  # the node logs every refusal (a channel or connection error)
            node_log = _node_log(broker)
            assert "refused for user 'compute-cred-" not in node_log, node_log[-5000:]
        if broker.kind == "redis":
            import redis
            with redis.Redis.from_url(broker.admin_url) as client:
                refused = client.execute_command("ACL", "LOG")
                assert refused == [], [{k: e[k] for k in (b"reason", b"object", b"context", b"count")}
                                       for e in refused]
    finally:
        stack.stop()


def _consuming(admin_url: str, queue: str) -> bool:
    """The liveness broadcast (tasks/messaging/liveness.py) reaches the worker and its reply comes back."""
    from celery import Celery
    app = Celery("probe", broker=admin_url)
    app.conf.broker_transport_options = REDIS_OPTIONS if admin_url.startswith("redis") else {}
    try:
        for _ in range(10):
            replies = app.control.broadcast("stratus_consuming", reply=True, timeout=2)
            if queue in repr(replies):
                return True
        return False
    finally:
        app.close()


def _dead_consumers_message(client, queue: str) -> None:
    """A message of ``queue`` that a consumer took and died with (kombu's unacked hash, delivered long ago)."""
    import json
    client.sadd(f"_kombu.binding.{queue}", f"{queue}\x06\x16\x06\x16{queue}")
    payload = {"body": "e30=", "headers": {}, "content-type": "application/json", "content-encoding": "utf-8",
               "properties": {"delivery_tag": "dead-1", "delivery_info": {"exchange": queue, "routing_key": queue}}}
    client.hset("unacked", "dead-1", json.dumps([payload, queue, queue]))
    client.zadd("unacked_index", {"dead-1": 1})


def _node_log(broker: Broker) -> str:
    return "".join(f.read_text(errors="replace") for f in (broker.server.dir / "log").glob("*.log"))


def _check_compute(stack: Stack) -> None:
    for name, proc in stack.procs.items():
        if name.startswith("compute") and proc.poll() is not None:
            raise AssertionError(f"{name} exited:\n{stack.log(name)[-3000:]}")


def _wait(check, timeout: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out:\n" + "\n".join(f"--- {n}\n{stack.log(n)[-3000:]}" for n in stack.procs))
        _check_compute(stack)
        time.sleep(0.5)


def test_tool_refuses_unknown_scheme() -> None:
    done = subprocess.run([str(Path(REPO) / "tools" / "compute-credentials"), "a", "--admin-url", "sqs://x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unsupported broker scheme" in done.stderr


def test_redis_host_worker_restores_another_hosts_message(broker, tmp_path):
    """kombu's visibility sweep runs in every consumer: host a's worker alone (no controller) gives a dead
    consumer's message back to compute.b, which a's user may push to but not read; refused, kombu would stop the
    worker ("Unrecoverable error")."""
    if broker.kind != "redis":
        pytest.skip("Redis only: RabbitMQ requeues a dead consumer's messages itself")
    import redis
    with redis.Redis.from_url(broker.admin_url) as client:
        client.delete("compute.b", "unacked", "unacked_index")
        _dead_consumers_message(client, "compute.b")
        env = {**os.environ, "STRATUS_BROKER_URL": broker.host_url("a"), "STRATUS_COMPUTE_HOSTS": "a",
               "STRATUS_STATE_DIR": str(tmp_path), "STRATUS_DATABASE_URL": "", "PYTHONUNBUFFERED": "1"}
        with open(tmp_path / "compute.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tasks.compute_worker"], cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while client.hexists("unacked", "dead-1") and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)
            text = (tmp_path / "compute.log").read_text(errors="replace")
            assert proc.poll() is None, text[-3000:]
            assert client.llen("compute.b") == 1 and not client.hexists("unacked", "dead-1"), text[-3000:]
            assert not [r for r in REFUSED if r in text], text[-3000:]
        finally:
            proc.terminate()
            proc.wait(30)
