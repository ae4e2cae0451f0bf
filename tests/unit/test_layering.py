"""The layout of docs/architecture-notes.md, checked on Stratus's own imports (tests/layering.py): floors, no
Flask below the HTTP layer, views imported only by create_app, no private names across modules, the write helpers
only in the conductor, no import cycles. The first tests show that each rule can fail."""
from __future__ import annotations

import subprocess
import sys
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
                            "tasks/compute.py": "from core import models\nfrom drivers import fake\n",
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
