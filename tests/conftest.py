"""The contract oracle for every test (issue 28): each response any test receives from Stratus, through a test
stack's API processes (requests, the openstack CLI, openstacksdk) or Flask's test client, is checked against
Nova's published response schema for its microversion. A test whose requests got a response that breaks the
schema fails, with each violation listed (tests/contract/)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app.response_log import ENV
from tests.contract.oracle import UNMAPPED_ROUTE, ResponseLog

_LOG: ResponseLog | None = None
_OWN_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Every API the session starts (test stacks inherit the environment; in-process apps read it) appends its
    responses to one file."""
    global _LOG, _OWN_DIR
    if not os.environ.get(ENV):
        _OWN_DIR = tempfile.mkdtemp(prefix="stratus-responses-")
        os.environ[ENV] = str(Path(_OWN_DIR) / "responses.jsonl")
    _LOG = ResponseLog(Path(os.environ[ENV]))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_DIR:
        os.environ.pop(ENV, None)
        shutil.rmtree(_OWN_DIR, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After the test body: check every response recorded since the previous check (this test's fixtures' set-up
    included). A passing test with violations fails; a failing one gets them as a report section."""
    try:
        result = yield
    except BaseException:
        _report(item, fail=False)
        raise
    _report(item, fail=True)
    return result


def _report(item: pytest.Item, fail: bool) -> None:
    violations = _LOG.new_violations() if _LOG else []
    if item.get_closest_marker("own_routes"):  # routes the test registered itself are no part of the contract
        violations = [v for v in violations if v.complaint != UNMAPPED_ROUTE]
    if not violations:
        return
    text = "\n".join(f"  {v}" for v in dict.fromkeys(violations))
    if fail:
        pytest.fail(f"responses that break Nova's published schema ({len(violations)}):\n{text}", pytrace=False)
    item.add_report_section("call", "contract", text)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Responses recorded after the last test's body (fixture teardown) are checked too."""
    violations = _LOG.new_violations() if _LOG else []
    if violations:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line("responses after the last test that break Nova's published schema:", red=True)
            for v in dict.fromkeys(violations):
                reporter.write_line(f"  {v}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
