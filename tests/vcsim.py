"""govmomi's vCenter simulator (vcsim, built by tools/build-vcsim) for the VMware tests, plus pyVmomi helpers
that observe vSphere state through their own connection (never through the driver under test)."""
from __future__ import annotations

import contextlib
import secrets
import select
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
GOVMOMI_SRC = Path("/usr/share/gocode/src/github.com/vmware/govmomi/simulator")
USER = "stratus-admin"


def unavailable() -> str | None:
    """Why vcsim cannot be built here, or None."""
    if shutil.which("go") is None:
        return "`go` is not on PATH"
    if not GOVMOMI_SRC.is_dir():
        return f"{GOVMOMI_SRC} is missing"
    return None


def build() -> str:
    """Build (or reuse) the vcsim binary; return its path."""
    proc = subprocess.run([str(REPO / "tools" / "build-vcsim")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"tools/build-vcsim failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def run(binary: str, *extra: str) -> Iterator[dict]:
    """Start vcsim on a free 127.0.0.1 port (it picks one and prints its URL) and stop it afterwards."""
    password = "pw-" + secrets.token_hex(12)
    proc = subprocess.Popen([binary, "-port", "0", "-username", USER, "-password", password, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().strip() if ready else ""
        assert line.startswith(("http://127.0.0.1:", "https://127.0.0.1:")), \
            f"vcsim did not print its URL (got {line!r})"
        port = int(line.split(":")[2].split("/")[0])
        yield {"url": line, "port": port, "user": USER, "password": password, "pid": proc.pid, "binary": binary}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def connect(sim: dict):
    """A separate pyVmomi connection to the simulator (the caller disconnects it)."""
    from pyVim.connect import SmartConnect
    return SmartConnect(protocol="http", host="127.0.0.1", port=sim["port"], user=sim["user"], pwd=sim["password"])


def inventory_vms(si, name: str) -> list:
    """The VMs called ``name`` in the whole inventory."""
    from pyVmomi import vim
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return [vm for vm in view.view if vm.name == name]
    finally:
        view.DestroyView()


def power_state(si, name: str) -> str:
    (vm,) = inventory_vms(si, name)
    return vm.runtime.powerState
