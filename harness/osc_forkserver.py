"""Run the unmodified openstack CLI without paying its imports on every command.

``python -m harness.osc_forkserver SOCKET`` imports ``openstackclient.shell`` (and the SDK and command modules the
tests use) once, then forks a child per request on a Unix socket; the child takes the request's argv,
environment and working directory, sends its output to the request's files and runs ``openstackclient.shell.main``
as the ``openstack`` console script does. Each command starts from the same freshly imported state, as a new
process would, without the 0.6 s of imports a new ``openstack`` process spends before its first request.

The client, :func:`run`, answers like ``subprocess.run(..., capture_output=True, text=True, timeout=...)``.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Modules the CLI imports only once a command runs: importing them here keeps that out of every command.
WARM_MODULES = (
    "openstack.connection", "openstack.compute.v2._proxy", "openstack.image.v2._proxy",
    "openstack.identity.v3._proxy", "openstack.network.v2._proxy", "openstack.block_storage.v3._proxy",
    "keystoneauth1.identity.generic", "keystoneauth1.loading._plugins.identity.generic",
    "openstackclient.compute.v2.server", "openstackclient.compute.v2.flavor", "openstackclient.compute.v2.keypair",
    "openstackclient.compute.v2.aggregate", "openstackclient.compute.v2.server_group",
    "openstackclient.compute.v2.hypervisor", "openstackclient.compute.v2.service", "openstackclient.image.v2.image",
    "openstackclient.identity.v3.token", "openstackclient.common.quota", "openstackclient.common.limits",
    "cliff.formatters.json_format", "cliff.formatters.table", "cliff.formatters.value", "cliff.formatters.shell",
)


# --- server --------------------------------------------------------------------------------------------------------

def _run_child(conn: socket.socket) -> None:
    """In the forked child: read one request, tell the client our pid, run the command, report its exit code."""
    request = json.loads(conn.makefile("rb").readline())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        target = os.open(path, flags)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [sys.argv[0], *request["argv"]]
    rc = 1
    try:
        from openstackclient.shell import main
        rc = _exit_status(main(request["argv"]))  # the console script: sys.exit(main())
    except SystemExit as exc:
        rc = _exit_status(exc.code)
    except BaseException:  # as the interpreter would: the traceback on stderr, exit code 1
        import traceback
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
    os._exit(rc & 0xFF)


def _exit_status(code: object) -> int:
    """The exit status the interpreter gives ``sys.exit(code)``: None is 0, any other non-integer is printed on
    stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def serve(socket_path: str) -> None:
    import importlib
    # cliff names the program after argv[0] when it is imported: the console script's path, as a new process has
    sys.argv = [str(Path(sys.executable).parent / "openstack")]
    import openstackclient.shell  # noqa: F401  (the import every command would otherwise pay)
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # a module a newer or older release moved: the command imports what it needs
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves: no zombies, no waitpid
    parent = os.getppid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(socket_path)
        server.listen(16)
        server.settimeout(1.0)
        print("ready", flush=True)
        while os.getppid() == parent:  # the test process is gone: so are we
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                server.close()
                conn.settimeout(None)
                _run_child(conn)
            conn.close()


# --- client --------------------------------------------------------------------------------------------------------

_server: subprocess.Popen | None = None
_socket_path = ""
_lock = threading.Lock()


def _ensure_server(python: str) -> str:
    global _server, _socket_path
    with _lock:
        if _server is not None and _server.poll() is None:
            return _socket_path
        _socket_path = os.path.join(tempfile.mkdtemp(prefix="osc-fork-"), "socket")
        repo = str(Path(__file__).resolve().parent.parent)
        _server = subprocess.Popen([python, "-m", "harness.osc_forkserver", _socket_path], cwd=repo,
                                   stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": repo})
        if _server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the openstack CLI fork server did not start (exit {_server.wait()})")
        atexit.register(_server.kill)
        return _socket_path


def run(python: str, argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``openstack *argv`` in a child of the fork server (in this process's working directory), answered as
    ``subprocess.run`` would answer it."""
    path = _ensure_server(python)
    with tempfile.TemporaryDirectory(prefix="osc-run-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        out.touch()
        err.touch()
        request = {"argv": argv, "env": env, "cwd": os.getcwd(), "stdout": str(out), "stderr": str(err)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            conn.settimeout(timeout)
            conn.sendall(json.dumps(request).encode() + b"\n")
            replies = conn.makefile("rb")
            pid = json.loads(replies.readline())["pid"]
            try:
                line = replies.readline()
            except socket.timeout:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["openstack", *argv], timeout, out.read_text(errors="replace"),
                                                err.read_text(errors="replace")) from None
        # No reply line: the child died without reporting (a signal); say so as a killed process would.
        rc = json.loads(line)["rc"] if line else -signal.SIGKILL
        return subprocess.CompletedProcess(["openstack", *argv], rc, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))


if __name__ == "__main__":
    serve(sys.argv[1])
