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
# Operators watch every boot step in Flower.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
worker_hijack_root_logger = False

beat_schedule = {
    "purge-expired-tokens": {"task": "stratus.conductor.purge_expired_tokens", "schedule": 600.0},
    "expire-stuck-instances": {"task": "stratus.conductor.expire_stuck_instances", "schedule": 60.0},
    "audit-allocations": {"task": "stratus.conductor.audit_allocations", "schedule": 300.0},
    # Nova runs _reclaim_queued_deletes every reclaim_instance_interval; a minute bounds the extra delay.
    "reclaim-soft-deleted": {"task": "stratus.conductor.reclaim_soft_deleted",
                             "schedule": float(min(max(_settings.reclaim_instance_interval, 1), 60))},
}
