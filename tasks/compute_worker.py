"""Start a compute worker: ``python -m tasks.compute_worker``.

It consumes ``compute.<host>`` for every host in ``compute_hosts`` (several fake hosts per process are fine),
registers each host's service and inventory through the conductor, then heartbeats every report_interval.
The pool is threads: a driver's connection and a fake driver's guests live in this one process.
It loads the compute task modules only (COMPUTE_MODULES), not the conductor's: no database driver is imported.
"""
from __future__ import annotations

import sys
import threading

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from core.routing import compute_queue
from core.settings import get_settings
from tasks.compute import heartbeat_loop
from tasks.messaging import shared_redis
from tasks.messaging.broker_users import WORKER_OPTIONS, restrict_declarations
from tasks.messaging.celery_app import celery

_stop = threading.Event()
# The task modules a compute worker runs: the controller's (conductor, scheduler, beat) talk to the DB and stay out.
COMPUTE_MODULES = ("tasks.compute", "tasks.compute_actions")
# Threads: a driver's connection and a fake driver's guests live in this one process.
POOL_ARGS = ("-P", "threads", "-c", "8")


# Broker connections (issue 25: at most 3; 10 workers x 1,000 hosts held 8 each idle, 20 under load): one producer
# connection shared by the pool threads (kombu's pool opened one per publishing pool thread, up to
# broker_pool_limit = 10). On RabbitMQ that leaves the consumer's (tasks and remote control, two channels), the
# producer's and the event dispatcher's; on Redis every command of the process goes over one connection beside the
# consumer's BRPOP and remote control's PSUBSCRIBE (tasks/messaging/shared_redis.py).
# Worker heartbeats stay on: without them (and without gossip and task events) Celery builds no event
# dispatcher, and Flower's enable_events could not turn on the compute steps' task events. Remote control stays
# on: resume_stalled_builds asks the workers which queues a live consumer serves (tasks/messaging/liveness.py)
# and must see a stopped compute worker at once.


def limit_connections(app: Celery) -> None:
    app.conf.broker_pool_limit = 1
    shared_redis.install(app)


def main(argv: list[str] | None = None) -> None:
    hosts = get_settings().host_names
    celery.conf.include = COMPUTE_MODULES

    @worker_ready.connect(weak=False)
    def _start_heartbeat(**_):
        threading.Thread(target=heartbeat_loop, args=(hosts, _stop), name="heartbeat", daemon=True).start()

    @worker_shutdown.connect(weak=False)
    def _stop_heartbeat(**_):
        _stop.set()

    # Least broker rights (tasks/messaging/broker_users.py, a user per host): with a host's user it declares only
    # its own queues; neither mingle nor gossip runs (broadcasts sent, every worker's events read).
    restrict_declarations(celery, get_settings().celery_broker_url, hosts)
    limit_connections(celery)
    queues = ",".join(compute_queue(h) for h in hosts)
    celery.worker_main(["worker", "-Q", queues, *POOL_ARGS, *WORKER_OPTIONS, "-n", f"compute-{hosts[0]}@%h",
                        "-l", get_settings().log_level, *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    main()
