"""Issue 31 acceptance: README.md's "Real virtual machines" commands, run as written, end with real QEMU guests
ACTIVE, their console logs showing the metadata they fetched, and a noVNC page connected to the guest.

The commands are the section's ```sh blocks, read from README.md at test time (so the text cannot drift from what
works). The first block (``make run-vms``) stays in the foreground like a user's first shell: it runs in the
background here until it prints "Stratus is ready"; the other blocks run in order in one bash, as typed in a second
shell. Only the environment is the test's own: a private state directory under /var/tmp (QEMU, user libvirt-qemu,
must reach the disks), private ports, and a bridge and CIDR of its own (removed at the end with
``tools/stratus-network down``). The noVNC URL the CLI printed is opened in headless Chromium.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness.stack import REPO, free_port
from tests.browser_support import chromium, wait_novnc_status
from tests.libvirt_support import LIBVIRT_BINARIES, LIBVIRT_PACKAGES, destroy_own_domains, domains, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.browser, pytest.mark.slow]

SECTION = "## Real virtual machines"
BRIDGE = "stratusrd0"
CIDR = "10.77.9.0/24"
SETUP_TIMEOUT = 900  # a first run installs packages and builds the test guest; later ones take about a minute
READY = "Stratus is ready"


def readme_blocks() -> list[str]:
    """The ```sh blocks of the README's "Real virtual machines" section, in order."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    return [m.group(1).strip() for m in re.finditer(r"^```sh\n(.*?)^```$", section, re.M | re.S)]


def test_readme_section_has_a_setup_command_then_the_cli():
    blocks = readme_blocks()
    assert len(blocks) >= 3, blocks
    assert blocks[0] == "make run-vms", "one command sets everything up"
    assert all(line.startswith(("source ", "openstack ", "until openstack ")) for b in blocks[1:]
               for line in b.splitlines()), blocks[1:]


@pytest.fixture(scope="module")
def env():
    missing = [b for b in (*LIBVIRT_BINARIES, "chromium") if shutil.which(b) is None and not
               os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        pytest.skip(f"!!! README VM TEST SKIPPED: {', '.join(missing)} not installed. Install: apt-get install -y "
                    f"{LIBVIRT_PACKAGES} chromium chromium-driver (or run make test) !!!")
    base = Path(tempfile.mkdtemp(prefix="stratus-readme-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "OS_"))}
    env.update({
        "STRATUS_STATE_DIR": str(base / "state"), "STRATUS_API_BIND": f"127.0.0.1:{free_port()}",
        "STRATUS_FLOWER_PORT": str(free_port()), "STRATUS_METADATA_PORT": str(free_port()),
        "STRATUS_NOVNCPROXY_PORT": str(free_port()), "STRATUS_SPICEHTML5PROXY_PORT": str(free_port()),
        "STRATUS_NETWORK_BRIDGE": BRIDGE, "STRATUS_NETWORK_CIDR": CIDR, "STRATUS_COMPUTE_HOSTS": "readme-1",
        "STRATUS_PASSWORD_HASH_ROUNDS": "4", "PYTHONUNBUFFERED": "1"})
    # (the contract oracle's response log, when this session has one)
    if os.environ.get("STRATUS_TEST_RESPONSE_LOG"):
        env["STRATUS_TEST_RESPONSE_LOG"] = os.environ["STRATUS_TEST_RESPONSE_LOG"]
    yield env
    subprocess.run([str(REPO / "tools" / "stratus-network"), "down"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud(env):
    """The first block in the background until the cloud says it is ready; Ctrl-C (SIGINT) at the end."""
    before = domains()
    log_path = Path(env["STRATUS_STATE_DIR"]).parent / "run-vms.log"
    setup = readme_blocks()[0]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "-c", setup], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + SETUP_TIMEOUT
        while READY not in log_path.read_text(errors="replace"):
            out = log_path.read_text(errors="replace")
            assert proc.poll() is None and "!!!" not in out and time.monotonic() < deadline, \
                f"`{setup}` did not get ready:\n{out[-6000:]}"
            time.sleep(1)
        yield log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # (the guests outlive the cloud, as the README says; the test removes its own)
        destroy_own_domains(Path(env["STRATUS_STATE_DIR"]) / "instances", before)


def run_blocks(env: dict, blocks: list[str]) -> dict[str, str]:
    """Run the blocks' lines in order in one bash (set -e); return each command's output by command."""
    script = ["set -euo pipefail"]
    for line in "\n".join(blocks).splitlines():
        script += [f"echo {shlex.quote('+++ ' + line)}", line]
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"the README's commands failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    out, current = {}, None
    for line in run.stdout.splitlines():
        if line.startswith("+++ "):
            current = line[4:]
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def test_readme_commands_boot_real_guests_that_read_metadata_and_show_in_novnc(env, cloud):
    blocks = readme_blocks()
    out = run_blocks(env, blocks[1:])
    commands = list(out)

    # vm1: kernel + ramdisk, its address on the kernel command line; metadata over HTTP
    create1 = next(c for c in commands if "--image stratus-test " in c)
    assert re.search(r"\|\s*status\s*\|\s*ACTIVE\s*\|", out[create1]), out[create1]
    vm1_id = re.search(r"\|\s*id\s*\|\s*(\S+)\s*\|", out[create1]).group(1)
    log1 = out[next(c for c in commands if "console log show vm1" in c)]
    assert "STRATUS-MD-DONE http ok" in log1, log1
    console = subprocess.run(["bash", "-c", f"source {env['STRATUS_STATE_DIR']}/openrc && .venv/bin/openstack "
                              "console log show vm1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert f'"uuid": "{vm1_id}"' in console.stdout, "the metadata the guest printed is its own"
    assert "STRATUS-NET source=cmdline" in console.stdout

    # vm2: the whole-disk image, booted by the BIOS from its own disk; its address from the config drive
    create2 = next(c for c in commands if "--image stratus-test-whole-disk" in c)
    assert re.search(r"\|\s*status\s*\|\s*ACTIVE\s*\|", out[create2]), out[create2]
    vm2_id = re.search(r"\|\s*id\s*\|\s*(\S+)\s*\|", out[create2]).group(1)
    xml = virsh("dumpxml", vm2_id).stdout
    assert "<boot dev='hd'/>" in xml and "<kernel>" not in xml, xml
    console2 = subprocess.run(["bash", "-c", f"source {env['STRATUS_STATE_DIR']}/openrc && .venv/bin/openstack "
                               "console log show vm2"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120).stdout
    # (SYSLINUX, the boot loader on the image's own disk, echoes to the serial console too)
    assert "SYSLINUX" in console2 and "STRATUS-NET source=configdrive" in console2, console2[-3000:]
    assert "STRATUS-MD-DONE http ok" in console2, console2[-3000:]

    # the noVNC URL the CLI printed, in a browser: connected to vm1's own VNC server
    url_out = out[next(c for c in commands if "console url show --novnc vm1" in c)]
    url = re.search(r"(http://\S+/vnc_auto\.html\?\S+)", url_out).group(1)
    assert url.startswith(f"http://127.0.0.1:{env['STRATUS_NOVNCPROXY_PORT']}/"), url
    with chromium() as browser:
        browser.get(url)
        assert wait_novnc_status(browser, r"^Connected", timeout=45) == f"Connected to QEMU ({vm1_id})"
        (REPO / "artifacts").mkdir(exist_ok=True)
        browser.save_screenshot(str(REPO / "artifacts" / "readme-vms-novnc.png"))
