"""The test stacks' openstack CLI fork server answers as the console script run as a new process does."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import osc_forkserver

PYTHON = sys.executable
OPENSTACK = str(Path(sys.executable).parent / "openstack")


def _env_without_os_vars() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_")}


def both(*argv: str) -> tuple[subprocess.CompletedProcess, ...]:
    env = _env_without_os_vars()
    return (subprocess.run([OPENSTACK, *argv], env=env, capture_output=True, text=True, timeout=60),
            osc_forkserver.run(PYTHON, list(argv), env, timeout=60))


@pytest.mark.parametrize("argv", [("--version",), ("no-such-command",), ("server", "list")])
def test_exit_code_and_output_match_the_console_script(argv):
    executed, forked = both(*argv)
    assert (forked.returncode, forked.stdout, forked.stderr) == (executed.returncode, executed.stdout,
                                                                 executed.stderr)
    assert forked.args == ["openstack", *argv]


def test_each_command_gets_its_own_environment():
    env = _env_without_os_vars()
    first = osc_forkserver.run(PYTHON, ["configuration", "show", "-f", "json"],
                               {**env, "OS_AUTH_URL": "http://192.0.2.1:1/v3", "OS_USERNAME": "alice"}, 60)
    second = osc_forkserver.run(PYTHON, ["configuration", "show", "-f", "json"],
                                {**env, "OS_AUTH_URL": "http://192.0.2.2:1/v3"}, 60)
    assert '"username": "alice"' in first.stdout and "192.0.2.1" in first.stdout
    assert "alice" not in second.stdout and "192.0.2.2" in second.stdout


def test_a_command_past_its_timeout_is_killed():
    with socket.socket() as silent:  # accepts the CLI's connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        env = _env_without_os_vars()
        env.update(OS_AUTH_URL=f"http://127.0.0.1:{port}/v3", OS_USERNAME="u", OS_PASSWORD="p",
                   OS_PROJECT_NAME="p", OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default")
        with pytest.raises(subprocess.TimeoutExpired):
            osc_forkserver.run(PYTHON, ["server", "list"], env, timeout=2)
    # the server goes on serving after a killed child
    assert osc_forkserver.run(PYTHON, ["--version"], env, timeout=60).returncode == 0
