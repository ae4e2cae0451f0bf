"""Celery configuration, derived from Stratus settings (STRATUS_BROKER_URL, STRATUS_STATE_DIR, ...).

Unset broker means the embedded default: kombu's filesystem transport plus the file result backend, both
under the state directory, so one machine runs everything with no server.
"""
from __future__ import annotations

from app.settings import get_settings
from tasks.routing import route_task

_settings = get_settings()

broker_url = _settings.celery_broker_url
result_backend = _settings.celery_result_backend
broker_connection_retry_on_startup = True

if broker_url.startswith("filesystem://"):
    broker_transport = "tasks.fs_transport:Transport"
    _queue_dir = _settings.state_path / "broker"
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
    broker_transport_options = {"visibility_timeout": 3600}

if result_backend.startswith("file://"):
    # Same files, written atomically (the API polls them while a worker writes): tasks/fs_results.py.
    result_backend = f"tasks.fs_results:AtomicFilesystemBackend+{result_backend}"

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 3600
task_routes = (route_task,)
task_default_queue = "conductor"
# At-least-once delivery: a task is acknowledged after it ran, and redelivered if its worker died.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Operators watch every boot step in Flower: Flower turns the workers' task events on itself when it runs
# (its enable_events broadcast, repeated every few seconds), so without Flower no worker spends CPU and broker
# messages on events nobody reads (bench/README.md: 3-15 % of the conductor's CPU).
worker_send_task_events = False
task_send_sent_event = False
task_track_started = False
# Canvas steps hand their result to the next step inside the chain's message: nothing reads it from the result
# backend, so it is not written there. API RPCs (app/rpc.py) and periodic tasks keep their results.
task_annotations = {name: {"ignore_result": True} for name in (
    "stratus.scheduler.schedule", "stratus.conductor.claim", "stratus.compute.build_disk", "stratus.compute.spawn",
    "stratus.compute.terminate", "stratus.compute.power_action")}
worker_hijack_root_logger = False

beat_schedule = {
    "purge-expired-tokens": {"task": "stratus.conductor.purge_expired_tokens", "schedule": 600.0},
    "expire-stuck-instances": {"task": "stratus.conductor.expire_stuck_instances", "schedule": 60.0},
    "audit-allocations": {"task": "stratus.conductor.audit_allocations", "schedule": 300.0},
}
