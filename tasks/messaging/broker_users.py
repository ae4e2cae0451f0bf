"""Per-host broker credentials (``tools/compute-credentials``): one broker user per compute host, whose permissions
reach its own queue and the destinations it publishes to, and never read another host's or the conductor's queue.

What a compute worker (``python -m tasks.compute_worker``, run with ``--without-mingle --without-gossip``) really
does on the broker, and so what its user needs:
- consumes ``compute.<host>``: the queue and its same-named direct exchange (declare, bind, consume, and publish
  to it: sync_power_states goes to the host's own queue);
- publishes to ``conductor`` without declaring it (the compute worker marks it ``no_declare``, see
  ``publish_queues``): Celery declares a destination queue on every publish, and binding a queue needs read on the
  exchange, which in RabbitMQ is the same name pattern as the queue's, so declaring would mean reading it;
- publishes a move's next step to the destination host's queue (tasks/conductor/moves.py chains ``move_op``
  steps from host to host), also undeclared: written, never read;
- remote control (the ``stratus_consuming`` broadcast of tasks/messaging/liveness.py, ``celery inspect``): its
  pidbox queue ``compute-<host>@<hostname>.celery.pidbox`` bound to the fanout ``celery.pidbox``, replies
  published to ``reply.celery.pidbox``. Never a write to ``celery.pidbox``: that is sending broadcasts (shutdown)
  to every worker. Mingle would need it (its hello is a broadcast), hence ``--without-mingle``;
- worker heartbeats and events (Flower) to ``celeryev``; gossip would consume it, hence ``--without-gossip``;
- the result backend: RabbitMQ's rpc:// replies go through the default exchange to the caller's reply queue,
  and a send that keeps its result declares the sender's own reply queue (a UUID). Redis: ``celery-task-meta-*``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from core.routing import compute_queue

# Queues a compute worker publishes to besides its own (tasks/compute.py sends conductor reports).
PUBLISH_QUEUES = ("conductor",)
# Redis: every task queue, write-only, for the visibility sweep (redis_acl_rules).
RESTORED_QUEUES = ("conductor", "scheduler", "compute.*")
# RabbitMQ: other hosts' exchanges, written (not declared, not read): a move's chain goes from host to host.
OTHER_COMPUTE = r"compute\..+"
# Celery's remote-control and event exchanges (kombu.pidbox, celery.events).
PIDBOX_EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"
EVENT_EXCHANGE = "celeryev"
# The rpc:// backend's reply queues are named by a UUID (app.thread_oid).
UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Worker options that keep a compute worker off broadcasts it would otherwise send (mingle) or read (gossip).
WORKER_OPTIONS = ("--without-mingle", "--without-gossip")


def publish_queues(broker_url: str, names: Sequence[str] = PUBLISH_QUEUES) -> list:
    """``task_queues`` for a compute worker whose broker user is a host's (``compute-<host>``, made by the tool):
    the destinations it publishes to, never declared by it, so its user needs no configure or read on them (the
    controller's workers declare them; until they did, a publish is refused and retried). Any other user keeps
    Celery's declarations: with Redis, a publish to an undeclared queue is silently dead-lettered."""
    from kombu import Exchange, Queue
    if not is_host_user(broker_url):
        return []
    return [Queue(q, Exchange(q), routing_key=q, no_declare=True) for q in names]


def is_host_user(broker_url: str) -> bool:
    return (urlsplit(broker_url).username or "").startswith(user_name(""))


def restrict_declarations(app: Any, broker_url: str, hosts: Sequence[str]) -> bool:
    """In a compute worker whose broker user is a host's: declare only its own queues. The conductor's queue
    (``publish_queues``) and other hosts' queues (the next step of a move's chain runs on the destination host)
    are published to as they are. Returns whether it applied; call before the worker starts."""
    if not is_host_user(broker_url):
        return False
    app.conf.task_queues = publish_queues(broker_url)
    queues = app.amqp.queues
    own = {compute_queue(h) for h in hosts}
    create = queues.new_missing

    def new_missing(name: str) -> Any:
        queue = create(name)
        queue.no_declare = name not in own
        return queue
    queues.new_missing = new_missing
    return True


def user_name(host: str) -> str:
    return f"compute-{host}"


def node_prefix(host: str) -> str:
    """The Celery node name's part before ``@`` (tasks/compute_worker.py names its node ``compute-<host>@%h``)."""
    return f"compute-{host}"


@dataclasses.dataclass(frozen=True)
class RabbitPermissions:
    configure: str
    write: str
    read: str


def _alternatives(names: Sequence[str]) -> str:
    return "^(" + "|".join(names) + ")$"


def rabbitmq_permissions(hosts: Sequence[str], publish_to: Sequence[str] = PUBLISH_QUEUES) -> RabbitPermissions:
    """The ``set_permissions`` regexes of the user of a worker serving ``hosts`` (the first names its node)."""
    if not hosts:
        raise ValueError("at least one host")
    own = [re.escape(compute_queue(h)) for h in hosts]
    pidbox = re.escape(node_prefix(hosts[0])) + r"@[^@]*\." + re.escape(PIDBOX_EXCHANGE)
    pidbox_x, reply_x, event_x = (re.escape(x) for x in (PIDBOX_EXCHANGE, REPLY_EXCHANGE, EVENT_EXCHANGE))
    dests = [re.escape(q) for q in publish_to]
    return RabbitPermissions(
        # Declared: own queues/exchanges, pidbox queue and exchanges, the event exchange, its own reply queue.
        configure=_alternatives([*own, pidbox, pidbox_x, reply_x, event_x, UUID_RE]),
        # Published to (exchanges) or bound (queues): never celery.pidbox (broadcasts); amq.default carries the
        # rpc:// results to the caller's reply queue; other hosts' exchanges: a move's next step on the destination.
        write=_alternatives([*own, *dests, pidbox, reply_x, event_x, "amq\\.default", UUID_RE, OTHER_COMPUTE]),
        # Consumed (queues) or bound from (exchanges): its own queues, its pidbox, its reply queue.
        read=_alternatives([*own, pidbox, pidbox_x, UUID_RE]))


def _glob(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def redis_acl_rules(hosts: Sequence[str], password: str, publish_to: Sequence[str] = PUBLISH_QUEUES,
                    db: int = 0) -> list[str]:
    """The ``ACL SETUSER <user>`` rules of the user of a worker serving ``hosts`` (Redis 7: ``%R~``/``%W~``).

    Isolated: its own queue lists and binding sets are the only queues it reads; the other task queues are
    write-only (LPUSH/RPUSH: the conductor's for its reports, all of them for kombu's visibility sweep, which any
    consumer runs). Shared, because kombu keeps them so: the ``unacked`` hash and its index (every consumer's
    in-flight messages, readable), fanout channels (PUBLISH and SUBSCRIBE share one permission: a host can
    broadcast remote-control commands and read worker events), result keys ``celery-task-meta-*`` and every binding
    set (read: a publish looks its routes up).
    """
    if not hosts:
        raise ValueError("at least one host")
    fanout = f"/{db}."
    own = [_glob(compute_queue(h)) for h in hosts]
    # kombu's binding tables: _kombu.binding.<exchange>, its _kombu.binding_permanent.<exchange> twin, and the
    # deadlines of expiring queues' bindings (the pidbox queues), which any consumer refreshes and sweeps.
    tables = [*own, _glob(PIDBOX_EXCHANGE), _glob(REPLY_EXCHANGE)]
    pidbox = f"{_glob(node_prefix(hosts[0]))}@*.{_glob(PIDBOX_EXCHANGE)}"  # its pidbox queue (a list, unused)
    keys = [f"~{q}" for q in [*own, pidbox]] + [f"~_kombu.binding{kind}.{t}" for t in tables for kind in ("", "_permanent")]
    keys += ["~unacked", "~unacked_index", "~unacked_mutex", "~celery-task-meta-*", "~_kombu.binding_deadlines",
             "%R~_kombu.binding.*",  # routes of every publish
             *(f"%W~{_glob(q)}" for q in publish_to),
             # Any consumer restores any dead consumer's unacknowledged messages (kombu's visibility sweep) to
             # their queues; a refused push there is an "unrecoverable error" that stops the worker.
             *(f"%W~{q}" for q in RESTORED_QUEUES),
             f"%W~*.{_glob(REPLY_EXCHANGE)}"]  # broadcast replies to the caller's reply list
    # kombu PSUBSCRIBEs the fanout's channel, and Redis checks a PSUBSCRIBE's pattern literally: no glob here.
    # Worker events (heartbeats, online/offline; task events while Flower asks) are PUBLISHed on celeryev/<type>.
    channels = [f"&{fanout}{PIDBOX_EXCHANGE}", f"&{_glob(fanout + EVENT_EXCHANGE)}/*", "&celery-task-meta-*"]
    return ["reset", "on", f">{password}", "+@all", "-@dangerous", "-@admin", *keys, *channels]


# --- URLs --------------------------------------------------------------------------------------------------------

def host_broker_url(admin_url: str, user: str, password: str, address: str | None = None) -> str:
    """The admin's broker URL with ``user``/``password`` instead of the admin's, and ``address`` (``host`` or
    ``host:port``: the controller as the compute node reaches it) instead of its host and port if given."""
    parts = urlsplit(admin_url)
    hostport = address or parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _rabbit_vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _redis_db(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path else 0


# --- applying ----------------------------------------------------------------------------------------------------

def _ctl(rabbitmqctl: Sequence[str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*rabbitmqctl, *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join([*rabbitmqctl, *args[:1]])} failed: {done.stdout}{done.stderr}".strip())
    return done


def rabbitmq_apply(rabbitmqctl: Sequence[str], vhost: str, user: str, password: str,
                   perms: RabbitPermissions) -> None:
    """Create or update the user (idempotent): password, no tags, these permissions on ``vhost`` only.
    The password goes through stdin, not the command line."""
    users = _ctl(rabbitmqctl, "-q", "list_users", "--no-table-headers").stdout.split("\n")
    exists = any(line.split("\t")[0] == user for line in users)
    done = subprocess.run([*rabbitmqctl, "change_password" if exists else "add_user", user], input=password,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl add_user/change_password failed: {done.stdout}{done.stderr}".strip())
    _ctl(rabbitmqctl, "set_user_tags", user)
    _ctl(rabbitmqctl, "set_permissions", "-p", vhost, user, perms.configure, perms.write, perms.read)


def rabbitmq_remove(rabbitmqctl: Sequence[str], user: str) -> bool:
    done = _ctl(rabbitmqctl, "delete_user", user, check=False)
    out = done.stdout + done.stderr
    if done.returncode != 0 and "no_such_user" not in out and "does not exist" not in out:
        raise RuntimeError(f"rabbitmqctl delete_user failed: {done.stdout}{done.stderr}".strip())
    return done.returncode == 0


def _redis_client(admin_url: str):
    import redis  # only the tool needs it
    return redis.Redis.from_url(admin_url)


def redis_apply(admin_url: str, user: str, rules: Sequence[str]) -> None:
    with _redis_client(admin_url) as client:
        client.execute_command("ACL", "SETUSER", user, *rules)
        _acl_save(client)


def redis_remove(admin_url: str, user: str) -> bool:
    with _redis_client(admin_url) as client:
        removed = bool(client.execute_command("ACL", "DELUSER", user))
        _acl_save(client)
    return removed


def _acl_save(client) -> None:
    """Persist to the server's aclfile when it has one; else the operator must CONFIG REWRITE or keep the users
    in redis.conf (a restart forgets users set at run time)."""
    import redis
    try:
        client.execute_command("ACL", "SAVE")
    except redis.ResponseError as exc:
        print(f"note: ACL SAVE: {exc} (users set at run time are lost on restart unless saved)", file=sys.stderr)


# --- the tool ----------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compute-credentials", description=__doc__.split("\n\n")[0])
    p.add_argument("host", help="the compute host's name (its queue is compute.<host>)")
    p.add_argument("--also", default="", help="comma-separated further host names this worker serves (its "
                   "STRATUS_COMPUTE_HOSTS must name HOST first: the worker's node, hence its pidbox, is named by it)")
    p.add_argument("--admin-url", required=True,
                   help="the controller's broker URL with admin rights (redis://:pw@host:6379/0, amqp://...)")
    p.add_argument("--address", help="controller address in the printed URL (default: the admin URL's)")
    p.add_argument("--rabbitmqctl", default="rabbitmqctl",
                   help="rabbitmqctl command on the broker's machine (e.g. 'rabbitmqctl -n rabbit@ctl')")
    p.add_argument("--remove", action="store_true", help="delete the host's user")
    args = p.parse_args(argv)
    hosts = [args.host, *(h.strip() for h in args.also.split(",") if h.strip())]
    user = user_name(args.host)
    scheme = urlsplit(args.admin_url).scheme
    if scheme in ("amqp", "amqps", "pyamqp"):
        ctl = shlex.split(args.rabbitmqctl)
        if args.remove:
            print(f"removed {user}" if rabbitmq_remove(ctl, user) else f"{user} did not exist")
            return 0
        password = secrets.token_urlsafe(24)
        rabbitmq_apply(ctl, _rabbit_vhost(args.admin_url), user, password, rabbitmq_permissions(hosts))
    elif scheme in ("redis", "rediss"):
        if args.remove:
            print(f"removed {user}" if redis_remove(args.admin_url, user) else f"{user} did not exist")
            return 0
        password = secrets.token_urlsafe(24)
        redis_apply(args.admin_url, user,
                    redis_acl_rules(hosts, password, db=_redis_db(args.admin_url)))
    else:
        p.error(f"unsupported broker scheme {scheme!r} (amqp, amqps, redis, rediss)")
    print(f"STRATUS_BROKER_URL={host_broker_url(args.admin_url, user, password, args.address)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
