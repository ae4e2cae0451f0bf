"""A Celery app for the consumer tests (tests/functional/test_consumer_liveness.py): Stratus's broker configuration
(celeryconfig.py) and kombu fixes, with two tasks that only touch files, so no database or stack is needed.
Environment: STRATUS_BROKER_URL (the private broker), STRATUS_STATE_DIR."""
from __future__ import annotations

import time
from pathlib import Path

from celery import Celery

from tasks.messaging import kombu_fixes, liveness

kombu_fixes.apply()

app = Celery("probe")
app.config_from_object("celeryconfig")
app.conf.update(task_routes=None, task_default_queue="probe", beat_schedule={}, task_annotations=None,
                result_backend=None)
liveness.install(app)


@app.task(name="probe.hold", ignore_result=True)
def hold(directory: str, name: str, seconds: float) -> None:
    """Take a prefetch slot for ``seconds``: <name>.started, then <name>.done."""
    Path(directory, f"{name}.started").touch()
    time.sleep(seconds)
    Path(directory, f"{name}.done").touch()


@app.task(name="probe.mark", ignore_result=True)
def mark(directory: str, name: str) -> None:
    Path(directory, f"{name}.done").touch()
