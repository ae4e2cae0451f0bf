"""The one Celery application of Stratus (``celery -A tasks.celery_app``)."""
from __future__ import annotations

from celery import Celery

celery = Celery("stratus", include=["tasks.conductor", "tasks.scheduler", "tasks.compute", "tasks.periodic",
                                    "tasks.conductor_actions", "tasks.conductor_moves", "tasks.compute_actions"])
celery.config_from_object("celeryconfig")
app = celery
