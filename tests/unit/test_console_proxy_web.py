"""A console proxy whose web client is not installed (the embedded default needs no apt) still starts, and its
pages say what to install instead of the proxy exiting (which would stop every process honcho runs)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from harness.stack import REPO, free_port


@pytest.mark.parametrize("module, setting, page, package", [
    ("proxies.novnc", "STRATUS_NOVNC_WEB", "vnc_auto.html", "novnc"),
    ("proxies.spicehtml5", "STRATUS_SPICEHTML5_WEB", "spice_auto.html", "spice-html5")])
def test_missing_web_client_is_a_404_that_names_the_package(tmp_path, module, setting, page, package):
    port = free_port()
    port_setting = "STRATUS_NOVNCPROXY_PORT" if package == "novnc" else "STRATUS_SPICEHTML5PROXY_PORT"
    env = {**os.environ, "STRATUS_STATE_DIR": str(tmp_path), setting: str(tmp_path / "not-installed"),
           port_setting: str(port), "STRATUS_BROKER_URL": "", "STRATUS_DATABASE_URL": ""}
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = requests.get(f"http://127.0.0.1:{port}/{page}", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r.status_code == 404
        assert f"apt-get install {package}" in r.text and "not installed" in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
