"""The one Celery application of Stratus (``celery -A tasks.celery_app``)."""
from __future__ import annotations

from celery import Celery

celery = Celery("stratus", include=["tasks.conductor", "tasks.conductor_admin", "tasks.scheduler", "tasks.compute",
                                     "tasks.periodic"])
celery.config_from_object("celeryconfig")
app = celery
