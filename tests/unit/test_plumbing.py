"""Routing, states, settings and the migration history."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.routing import route_task
from core.settings import Settings, load_settings
from core.states import status_of

REPO = Path(__file__).resolve().parents[2]


def test_routes():
    assert route_task("stratus.conductor.claim", [{}], {}, {}) == {"queue": "conductor"}
    assert route_task("stratus.scheduler.schedule", [{}], {}, {}) == {"queue": "scheduler"}
    assert route_task("stratus.compute.spawn", [{"host": "h7"}], {}, {}) == {"queue": "compute.h7"}
    with pytest.raises(ValueError):
        route_task("stratus.compute.spawn", [{}], {}, {})


@pytest.mark.parametrize("vm,task,status", [("active", None, "ACTIVE"), ("building", "scheduling", "BUILD"),
                                            ("stopped", None, "SHUTOFF"), ("active", "rebooting", "REBOOT"),
                                            ("active", "rebooting_hard", "HARD_REBOOT"), ("error", None, "ERROR"),
                                            ("paused", None, "PAUSED"), ("deleted", None, "DELETED")])
def test_status_mapping(vm, task, status):
    assert status_of(vm, task) == status


def test_settings_from_env_and_file(tmp_path):
    cfg = tmp_path / "stratus.toml"
    cfg.write_text('compute_driver = "libvirt"\nmax_attempts = 5\n')
    s = load_settings({"STRATUS_CONFIG": str(cfg), "STRATUS_MAX_ATTEMPTS": "7",
                       "STRATUS_BROKER_URL": "redis://x:6379/0"})
    assert s.compute_driver == "libvirt" and s.max_attempts == 7
    assert s.celery_result_backend == "redis://x:6379/0"
    assert Settings(broker_url="amqp://g:g@h//").celery_result_backend == "rpc://"
    assert Settings(state_dir=str(tmp_path)).sqlalchemy_url.startswith("sqlite:///")
    with pytest.raises(ValueError, match="unknown Stratus settings"):
        (tmp_path / "bad.toml").write_text("no_such_setting = 1\n")
        load_settings({"STRATUS_CONFIG": str(tmp_path / "bad.toml")})


@pytest.mark.parametrize("given,used", [
    ("postgresql://root@db/stratus", "postgresql+psycopg://root@db/stratus"),
    ("postgres://root@db/stratus", "postgresql+psycopg://root@db/stratus"),
    ("postgresql+psycopg2://root@db/stratus", "postgresql+psycopg2://root@db/stratus"),  # a named driver is kept
    ("mysql+pymysql://root@db/stratus", "mysql+pymysql://root@db/stratus")])
def test_postgresql_without_a_driver_means_psycopg3(given, used):
    assert Settings(database_url=given).sqlalchemy_url == used


def test_migrations_match_models(tmp_path):
    """`flask db upgrade` from scratch, then `flask db check`: the Alembic history equals the models."""
    env = {"STRATUS_STATE_DIR": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    flask = str(Path(sys.executable).parent / "flask")
    up = subprocess.run([flask, "--app", "app", "db", "upgrade"], cwd=REPO, env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    check = subprocess.run([flask, "--app", "app", "db", "check"], cwd=REPO, env=env, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_canvas_steps_show_their_ctx_briefly(monkeypatch):
    """A step forwarded by the worker's tracer (Task.apply_async) and a chain's first publish carry an argsrepr of
    the ctx's identifying keys, not Celery's repr of the whole ctx; other arguments keep Celery's own."""
    import tasks.compute  # noqa: F401  (registers the tasks)
    import tasks.conductor.actions  # noqa: F401
    import tasks.conductor.boot  # noqa: F401
    from tasks.common import Chain
    from tasks.messaging.celery_app import celery, ctx_argsrepr

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(celery, "send_task", lambda name, args=None, kwargs=None, **opts: sent.append((name, opts)))
    ctx = {"instance_uuid": "u-1", "request_id": "req-1", "action": "create", "host": "h1", "t0": 1.0,
           "explanation": "x" * 500, "hosts": ["h1", "h2"]}
    celery.tasks["stratus.compute.spawn"].apply_async((ctx,))
    Chain(("stratus.compute.build_disk", "stratus.compute.spawn"), ctx).apply_async()
    celery.tasks["stratus.conductor.step_failed"].apply_async((ctx, "boom", "trace", False))
    celery.tasks["stratus.conductor.update_instance"].apply_async(("u-1", {"display_name": "x"}))
    shown = "({'instance_uuid': 'u-1', 'action': 'create', 'request_id': 'req-1', 'host': 'h1'},)"
    assert sent[0][1]["argsrepr"] == sent[1][1]["argsrepr"] == shown and sent[0][1]["kwargsrepr"] == "{}"
    assert sent[2][1]["argsrepr"] == shown[:-2] + ", 'boom', 'trace', False)"
    assert "argsrepr" not in sent[3][1]  # not a ctx: Celery's saferepr
    assert ctx_argsrepr(("u-1",)) is None and ctx_argsrepr(({"host": "h"},)) is None
