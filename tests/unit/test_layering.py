"""The layout of docs/architecture-notes.md, checked on Stratus's own imports (tests/layering.py): floors, no
Flask below the HTTP layer, views imported only by create_app, no private names across modules, the write helpers
only in the conductor, no import cycles, no database on the compute side (issue 25). The first tests show that each
rule can fail."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests import layering


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for pkg in layering.PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


def _broken(root: Path) -> dict[str, list[str]]:
    return {rule: found for rule, found in layering.violations(root).items() if found}


def test_imports_for_annotations_only_do_not_count(tmp_path):
    root = _tree(tmp_path, {"core/a.py": "from core import b\n",
                            "core/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import a\n"})
    assert _broken(root) == {}


def test_a_clean_tree_breaks_no_rule(tmp_path):
    root = _tree(tmp_path, {"core/models.py": "import sqlalchemy\n",
                            "tasks/conductor.py": "from core import models\nfrom drivers import fake\n",
                            "tasks/compute.py": "from drivers import fake\nfrom core import settings\n",
                            "drivers/fake.py": "from core.settings import get_settings\n",
                            "core/settings.py": "def get_settings(): ...\n",
                            "app/views.py": "from flask import Blueprint\nbp = Blueprint('x', __name__)\n",
                            "app/__init__.py": "def create_app():\n    from app.views import bp\n"})
    assert _broken(root) == {}


@pytest.mark.parametrize("files, rule", [
    ({"core/models.py": "from tasks import compute\n", "tasks/compute.py": ""}, "upward or sideways import"),
    ({"drivers/fake.py": "from core import db\n", "core/db.py": ""}, "upward or sideways import"),
    ({"scheduler/filters.py": "from core import models\n", "core/models.py": ""}, "upward or sideways import"),
    ({"metadata/api.py": "from app import auth\n", "app/auth.py": ""}, "upward or sideways import"),
    ({"tasks/compute.py": "import flask\n"}, "import of a web framework below the HTTP layer"),
    ({"app/servers.py": "from flask import Blueprint\nbp = Blueprint('s', __name__)\nEXTRA = {}\n",
      "app/openapi.py": "def f():\n    from app.servers import EXTRA\n"}, "views module imported outside create_app"),
    ({"core/a.py": "def _hidden(): ...\n", "core/b.py": "from core.a import _hidden\n"},
     "private name imported from another module"),
    ({"core/a.py": "def _hidden(): ...\n", "core/b.py": "from core import a\na._hidden()\n"},
     "private attribute of another module"),
    ({"core/writes/instances.py": "", "app/servers.py": "from core.writes import instances\n"},
     "write helpers imported outside the conductor"),
    ({"bench/boot.py": "from tests import stack\n", "tests/stack.py": ""}, "bench imports tests"),
    ({"tasks/compute.py": "from core import db\n", "core/db.py": ""}, "database on the compute side"),
    ({"tasks/compute_actions.py": "def f():\n    from sqlalchemy import select\n"}, "database on the compute side"),
    ({"tasks/compute.py": "from tasks import common\n", "tasks/common.py": "from core import quota\n",
      "core/quota.py": "import sqlalchemy\n"}, "database on the compute side"),
    ({"drivers/fake.py": "import pymysql\n"}, "database on the compute side"),
    ({"core/a.py": "from core import b\n", "core/b.py": "def f():\n    from core import a\n"}, "import cycle"),
    ({"core/a.py": "from core import b\n", "core/b.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\n"
      "def f():\n    from core import a\n"}, "import cycle"),
])
def test_each_rule_fails_on_a_tree_that_breaks_it(tmp_path, files, rule):
    assert rule in _broken(_tree(tmp_path, files))


def test_stratus_keeps_its_layout():
    broken = _broken(layering.ROOT)
    assert not broken, "\n".join(f"{rule}:\n  " + "\n  ".join(found) for rule, found in broken.items())


def test_workers_and_drivers_run_without_flask():
    """Import every module of the floors below the HTTP layer in a fresh interpreter: none loads Flask."""
    modules = sorted(m for m in layering.sources() if m.split(".")[0] in layering.NO_FLASK)
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {layering.FLASK_MODULES!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=layering.ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_compute_worker_loads_no_database_driver():
    """A compute worker's whole import set (its task modules as the worker loads them, the fake driver, a spec
    from a message), with no database URL in its environment: no DB layer and no database library is loaded."""
    code = ("import sys\n"
            "from tasks import compute_worker\n"
            "from tasks.messaging.celery_app import celery\n"
            "celery.conf.include = compute_worker.COMPUTE_MODULES\n"
            "celery.loader.import_default_modules()\n"
            "from tasks import compute\n"
            "import drivers.fake, drivers.configdrive\n"
            "compute.driver_for('nodb-1')\n"
            "assert 'stratus.compute.spawn' in celery.tasks and 'stratus.conductor.claim' not in celery.tasks\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {layering.DB_LIBRARIES!r} or "
            f"any(m == p or m.startswith(p + '.') for p in {layering.DB_LAYER!r})))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    with tempfile.TemporaryDirectory() as state:
        env.update(STRATUS_STATE_DIR=state, STRATUS_COMPUTE_DRIVER="fake")
        out = subprocess.run([sys.executable, "-c", code], cwd=layering.ROOT, capture_output=True, text=True,
                             env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_a_running_compute_worker_has_no_database_module():
    """The same, in a compute worker started as the Procfile starts it (tasks.compute_worker.main, embedded
    filesystem broker, no database URL): when it is ready, no DB module is loaded and no conductor task known."""
    code = ("import os, sys\n"
            "from celery.signals import worker_ready\n"
            "from tasks import compute_worker\n"
            "from tasks.messaging.celery_app import celery\n"
            "@worker_ready.connect(weak=False)\n"
            "def check(**_):\n"
            f"    db = sorted(m for m in sys.modules if m.split('.')[0] in {layering.DB_LIBRARIES!r} or "
            f"any(m == p or m.startswith(p + '.') for p in {layering.DB_LAYER!r}))\n"
            "    conductor = sorted(t for t in celery.tasks if t.startswith('stratus.conductor'))\n"
            "    with open(os.environ['RESULT_FILE'], 'w') as out:\n"
            "        out.write(repr((db, conductor, 'stratus.compute.spawn' in celery.tasks)))\n"
            "    os._exit(0)\n"
            "compute_worker.main(['-l', 'ERROR'])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    with tempfile.TemporaryDirectory() as state:
        result = Path(state) / "result"
        env.update(STRATUS_STATE_DIR=state, STRATUS_COMPUTE_HOSTS="nodb-1", RESULT_FILE=str(result))
        out = subprocess.run([sys.executable, "-c", code], cwd=layering.ROOT, capture_output=True, text=True,
                             env=env, timeout=120)
        assert result.exists(), out.stdout + out.stderr
        assert result.read_text() == "([], [], True)"
