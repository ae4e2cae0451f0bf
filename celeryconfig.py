"""Celery configuration, derived from Stratus settings (STRATUS_BROKER_URL, STRATUS_STATE_DIR, ...).

Unset broker means the embedded default: kombu's filesystem transport plus the file result backend, both
under the state directory, so one machine runs everything with no server.
"""
from __future__ import annotations

from pathlib import Path

from core.routing import route_task
from core.settings import get_settings
from core.broker_tls import broker_ssl_options

_settings = get_settings()

broker_url = _settings.celery_broker_url
result_backend = _settings.celery_result_backend
broker_use_ssl = broker_ssl_options(broker_url, _settings.broker_ssl_ca, _settings.broker_ssl_cert,
                                    _settings.broker_ssl_key)
if broker_use_ssl and result_backend == broker_url:
    redis_backend_use_ssl = broker_use_ssl  # the results live on the same Redis
# Workers wait out broker outages: reconnect forever (1 s, 2 s, ... capped by kombu), never exit.
broker_connection_retry_on_startup = True
broker_connection_retry = True
broker_connection_max_retries = None
broker_connection_timeout = 4
# Publishing from workers (canvas steps, reports) rides out a restart of the broker of up to ~30 s; the API
# passes its own short policy (tasks/messaging/rpc.py) and answers 503 instead of waiting.
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 20, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}

if broker_url.startswith("filesystem://"):
    broker_transport = "tasks.messaging.fs_transport:Transport"
    _queue_dir = Path(_settings.fs_broker_dir).resolve() if _settings.fs_broker_dir else _settings.state_path / "broker"
    for sub in ("queue", "processed", "control"):
        (_queue_dir / sub).mkdir(parents=True, exist_ok=True)
    (_settings.state_path / "results").mkdir(parents=True, exist_ok=True)
    broker_transport_options = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
        # kombu's default is 1 s per poll; a boot passes through five queues.
        "polling_interval": _settings.fs_broker_polling_interval,
    }
elif broker_url.startswith(("redis://", "rediss://")):
    # A message taken by a worker that died unacknowledged is delivered again after visibility_timeout.
    # Every worker sweeps for such messages every 5 s (kombu's default is every ~100 s).
    # Stratus sends no task priorities, so each queue is one Redis list: kombu's default steps (0, 3, 6, 9) make
    # every BRPOP name four keys per queue, which a compute worker serving many (fake) hosts rebuilt and sent on
    # every poll (a fifth of its CPU with 100 hosts).
    broker_transport_options = {"visibility_timeout": _settings.broker_visibility_timeout,
                                "unacked_restore_interval": 5, "unacked_restore_throttle": 1,
                                "socket_timeout": 10, "socket_connect_timeout": 4, "retry_on_timeout": True,
                                "health_check_interval": 10, "socket_keepalive": True, "priority_steps": [0]}
    redis_socket_timeout = 10
    redis_socket_connect_timeout = 4
    redis_retry_on_timeout = True
    redis_backend_health_check_interval = 10
elif broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
    # Publisher confirms: a publish returns only once RabbitMQ has taken the (persistent) message, so the
    # API never answers 202 for a boot the broker did not accept.
    broker_transport_options = {"confirm_publish": True}
    broker_heartbeat = 10

if result_backend.startswith("file://"):
    # Same files, written atomically (the API polls them while a worker writes): tasks/messaging/fs_results.py.
    result_backend = f"tasks.messaging.fs_results:AtomicFilesystemBackend+{result_backend}"
elif result_backend.startswith("rpc://"):
    # Bounded waits and a clean reconnection across a RabbitMQ restart: tasks/messaging/rpc_results.py.
    result_backend = f"tasks.messaging.rpc_results:RPCBackend+{result_backend}"

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 3600
# Storing a result (a conductor reply) retries through a short result-backend outage.
result_backend_always_retry = True
result_backend_max_retries = 10
task_routes = (route_task,)
task_default_queue = "conductor"
# At-least-once delivery: a task is acknowledged after it ran, and redelivered if its worker died (the Procfile's
# workers run thread or solo pools: a killed worker process leaves its messages unacknowledged; the reject
# setting covers a prefork child killed mid-task, for operators who choose prefork).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# After a reconnection Celery lowers the prefetch count while tasks are running and raises it again as each one
# is acknowledged, with a basic.qos that waits for its reply: in a threads-pool worker that wait reads the
# consumer's AMQP connection from the pool thread while the main thread reads it too, the frames interleave
# (UnexpectedFrame) and the worker reconnects again, up to tens of seconds without consuming after a RabbitMQ
# restart (test_outages). With a prefetch of one per thread there is little to gain from the reduction.
worker_enable_prefetch_count_reduction = False
# Operators watch every boot step in Flower: Flower turns the workers' task events on itself when it runs
# (its enable_events broadcast, repeated every few seconds), so without Flower no worker spends CPU and broker
# messages on events nobody reads (bench/README.md: 3-15 % of the conductor's CPU).
worker_send_task_events = False
task_send_sent_event = False
task_track_started = False
# Canvas steps hand their result to the next step inside the chain's message: nothing reads it from the result
# backend, so it is not written there. API RPCs (tasks/messaging/rpc.py) and periodic tasks keep their results.
task_annotations = {name: {"ignore_result": True} for name in (
    "stratus.scheduler.schedule", "stratus.conductor.claim", "stratus.compute.build", "stratus.compute.build_disk",
    "stratus.compute.spawn",
    "stratus.compute.terminate", "stratus.compute.power_action")}
worker_hijack_root_logger = False

beat_schedule = {
    "purge-expired-tokens": {"task": "stratus.conductor.purge_expired_tokens", "schedule": 600.0},
    "expire-stuck-instances": {"task": "stratus.conductor.expire_stuck_instances", "schedule": 60.0},
    "resume-stalled-builds": {"task": "stratus.conductor.resume_stalled_builds", "schedule": 30.0},
    "audit-allocations": {"task": "stratus.conductor.audit_allocations", "schedule": 300.0},
}
# Nova runs _reclaim_queued_deletes every reclaim_instance_interval and skips it while the interval is 0 (soft delete
# off, the default): beat sends nothing then. A minute bounds the extra delay of a long interval.
if _settings.reclaim_instance_interval > 0:
    beat_schedule["reclaim-soft-deleted"] = {"task": "stratus.conductor.reclaim_soft_deleted",
                                             "schedule": float(min(_settings.reclaim_instance_interval, 60))}
