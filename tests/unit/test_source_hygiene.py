"""Checks over Stratus's own source that no linter in the test run makes.

A statement after a ``return`` or ``raise`` in the same block never runs: a password DELETE left stranded that way
(under a helper inserted above it) kept deleted servers' passwords in the database.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "bench", "core", "drivers", "harness", "metadata", "proxies", "scheduler", "tasks", "tests", "tools")
_ENDS_BLOCK = (ast.Return, ast.Raise, ast.Continue, ast.Break)


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")) + sorted(ROOT.glob("*.py"))


def unreachable_statements(source: str) -> list[int]:
    """Line numbers of statements that follow a return/raise/continue/break in the same block."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                lines += [later.lineno for stmt, later in zip(block, block[1:]) if isinstance(stmt, _ENDS_BLOCK)]
    return lines


def test_the_check_finds_a_stranded_statement():
    assert unreachable_statements("def f(s):\n    return 1\n    s.delete()\n") == [3]
    assert unreachable_statements("for x in y:\n    if x:\n        continue\n    f(x)\n") == []


def test_no_statement_follows_a_return_or_raise():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in _sources()
             for line in unreachable_statements(path.read_text())]
    assert _sources() and not found, found
