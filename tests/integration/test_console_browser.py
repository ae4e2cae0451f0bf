"""Issue 6 acceptance: the noVNC and SPICE HTML5 consoles of a real QEMU guest, opened in headless Chromium
through Stratus's console proxies, with URLs the unmodified ``openstack console url show`` CLI prints; and (issue
29 item 5) the same guest's serial console, a shell typed into through the serial proxy by a WebSocket client.

The whole cloud runs as real processes (api, conductor, scheduler, compute with the libvirt driver, novncproxy,
spicehtml5proxy). Screenshots go to ``artifacts/``. Token rules that need a forged request (foreign Origin,
an expired token) are checked with a plain WebSocket client; single use is checked in the browser.
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
import struct
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from tests.browser_support import CANVAS_INK as _CANVAS_INK, chromium, wait_ink, wait_novnc_status
from tests.libvirt_support import domains as _domains, libvirt_stack, require_test_image, virsh as _virsh
from harness.stack import REPO, console_proxy_env, wait_port

pytestmark = [pytest.mark.libvirt, pytest.mark.browser]

ARTIFACTS = REPO / "artifacts"
HOST = "console-1"
MARKER = "STRATUS-GUEST-UP"


@pytest.fixture(scope="module")
def test_image() -> Path:
    return require_test_image(what="BROWSER CONSOLE TESTS")


@pytest.fixture(scope="module")
def stack(test_image):
    env, novnc, spice = console_proxy_env()
    with libvirt_stack("console", HOST, extra_env=env, processes=("api", "conductor", "scheduler", "compute",
                                                                  "novncproxy", "spicehtml5proxy",
                                                                  "serialproxy")) as st:
        st.novnc_port, st.spice_port, st.serial_port = novnc, spice, int(env["STRATUS_SERIALPROXY_PORT"])
        for port in (novnc, spice, st.serial_port):
            wait_port(port)
        yield st


@pytest.fixture(scope="module")
def api(stack) -> requests.Session:
    s = requests.Session()
    s.headers.update({"X-Auth-Token": stack.admin_token(), "OpenStack-API-Version": "compute 2.96"})
    return s


def _upload(stack, api, path: Path, name: str, fmt: str, container: str, **props) -> str:
    img = api.post(f"{stack.url}/image/v2/images", json={"name": name, "disk_format": fmt,
                                                          "container_format": container, **props}, timeout=30)
    img.raise_for_status()
    api.put(f"{stack.url}/image/v2/images/{img.json()['id']}/file", data=path.read_bytes(),
            headers={"Content-Type": "application/octet-stream"}, timeout=120).raise_for_status()
    return img.json()["id"]


@pytest.fixture(scope="module")
def guests(stack, api, test_image) -> dict[str, str]:
    """Two real guests, A and B, booted through the API and up to userspace (their screens show text)."""
    kernel = _upload(stack, api, test_image / "vmlinuz", "console-kernel", "aki", "aki")
    ramdisk = _upload(stack, api, test_image / "initrd.img", "console-ramdisk", "ari", "ari")
    disk = _upload(stack, api, test_image / "disk.qcow2", "console-disk", "qcow2", "bare", kernel_id=kernel,
                   ramdisk_id=ramdisk, os_command_line=(test_image / "cmdline").read_text().strip())
    uuids = {}
    for name in ("con-a", "con-b"):
        r = api.post(f"{stack.url}/v2.1/servers", json={"server": {"name": name, "imageRef": disk, "flavorRef": "42",
                                                                    "networks": "none"}}, timeout=60)
        assert r.status_code == 202, r.text
        uuids[name] = r.json()["server"]["id"]
    deadline = time.monotonic() + 150
    pending = dict(uuids)
    while pending:
        assert time.monotonic() < deadline, f"guests {list(pending)} did not boot"
        for name, uuid in list(pending.items()):
            info = api.get(f"{stack.url}/v2.1/servers/{uuid}", timeout=30).json()["server"]
            assert info["status"] in ("BUILD", "ACTIVE"), info
            if info["status"] == "ACTIVE":
                out = api.post(f"{stack.url}/v2.1/servers/{uuid}/action", json={"os-getConsoleOutput": {}},
                               timeout=30)
                if out.ok and MARKER in out.json()["output"]:
                    del pending[name]
        time.sleep(0.5)
    return uuids


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def console_url(stack, server: str, kind: str) -> str:
    out = stack.openstack_json("console", "url", "show", f"--{kind}", server)
    assert out["type"] == {"novnc": "novnc", "spice": "spice-html5"}[kind], out
    return out["url"]


def token_of(url: str) -> str:
    q = parse_qs(urlsplit(url).query)
    if "token" in q:
        return q["token"][0]
    return parse_qs(urlsplit(unquote(q["path"][0])).query)["token"][0]


def set_expires(stack, token: str, expires: int) -> None:
    with sqlite3.connect(stack.state_dir / "stratus.sqlite", timeout=30) as c:
        n = c.execute("UPDATE console_auth_tokens SET expires=? WHERE token_hash=?",
                      (expires, hashlib.sha256(token.encode()).hexdigest())).rowcount
    assert n == 1


def test_novnc_console_in_chromium(stack, guests, browser):
    a = guests["con-a"]
    url = console_url(stack, "con-a", "novnc")
    assert url.startswith(f"http://127.0.0.1:{stack.novnc_port}/vnc_auto.html?path=%3Ftoken%3D")
    browser.get(url)
    status = wait_novnc_status(browser, r"^Connected")
    assert status == f"Connected to QEMU ({a})", "the token led to instance A's own VNC server"
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(browser).send_keys("\n").perform()  # the busybox shell prints a prompt on the guest's tty0
    ink = wait_ink(browser, "canvas")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "console-novnc.png"))
    assert ink > 0

    # The same URL a second time: refused by the proxy, noVNC never connects.
    browser.get("about:blank")
    browser.get(url)
    status = wait_novnc_status(browser, r"^(Disconnected|Something went wrong)")
    assert "Connected to" not in status
    log = stack.log("novncproxy")
    assert re.search(rf"type=novnc instance={a} client=127\.0\.0\.1 result=accepted target=127\.0\.0\.1:\d+", log)
    assert f"type=novnc instance={a} client=127.0.0.1 result=refused (token already used)" in log


def test_spice_console_in_chromium(stack, guests, browser):
    a = guests["con-a"]
    url = console_url(stack, "con-a", "spice")
    assert url.startswith(f"http://127.0.0.1:{stack.spice_port}/spice_auto.html?token=")
    browser.get(url)
    ink = wait_ink(browser, "#spice-screen canvas", timeout=45)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "console-spice.png"))
    assert ink > 0
    log = stack.log("spicehtml5proxy")
    accepted = re.findall(rf"type=spice-html5 instance={a} client=127\.0\.0\.1 result=accepted", log)
    assert len(accepted) >= 2, "the main channel and the session's display/inputs channels"

    # The same URL a second time: its main channel is refused, nothing is drawn.
    browser.get("about:blank")
    browser.get(url)
    deadline = time.monotonic() + 15
    while "result=refused (token already used)" not in stack.log("spicehtml5proxy"):
        assert time.monotonic() < deadline, stack.log("spicehtml5proxy")[-2000:]
        time.sleep(0.2)
    time.sleep(1)
    assert browser.execute_script(_CANVAS_INK, "#spice-screen canvas") in (-1, 0)
    after = stack.log("spicehtml5proxy").split("result=refused (token already used)", 1)[1]
    assert "result=accepted" not in after, "no channel of the refused second session got through"


def _rfb_desktop_name(ws) -> str:
    """Speak just enough RFB (3.8, security None) over the proxy to read the server's desktop name."""
    buf = b""

    def read(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            buf += ws.recv()
        out, buf = buf[:n], buf[n:]
        return out

    assert read(12).startswith(b"RFB ")
    ws.send_binary(b"RFB 003.008\n")
    types = read(read(1)[0])
    assert 1 in types, types
    ws.send_binary(b"\x01")
    assert read(4) == b"\x00\x00\x00\x00"
    ws.send_binary(b"\x01")  # ClientInit, shared
    read(4 + 16)
    (length,) = struct.unpack(">I", read(4))
    return read(length).decode()


def test_serial_console_of_a_real_guest(stack, guests, api):
    """Through the serial proxy to guest A's ttyS0, a raw TCP listener of the serial range: the shell's prompt,
    a command typed and its output, which the console log (virtlogd's, on the same port) also shows."""
    import websocket

    a = guests["con-a"]
    out = stack.openstack_json("console", "url", "show", "--serial", "con-a")
    assert out["type"] == "serial", out
    assert out["url"].startswith(f"ws://127.0.0.1:{stack.serial_port}/?token="), out
    listen = re.search(r"<serial type='tcp'>\s*<source mode='bind' host='127\.0\.0\.1' service='(\d+)'",
                       _virsh("dumpxml", a).stdout)
    assert listen and 10000 <= int(listen.group(1)) < 20000, _virsh("dumpxml", a).stdout
    ws = websocket.create_connection(out["url"], subprotocols=["binary"], timeout=30)
    seen = b""

    def until(needle: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while needle not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            seen += ws.recv()
    try:
        ws.send_binary(b"\r")  # what the guest printed before anyone connected is in the log only
        until(b"# ")  # busybox sh's prompt
        ws.send_binary(b"echo STRATUS-SERIAL-$((6*7))\r")
        until(b"STRATUS-SERIAL-42")
    finally:
        ws.close()
    assert f"type=serial instance={a} client=127.0.0.1 result=accepted target=127.0.0.1:{listen.group(1)}" in \
        stack.log("serialproxy")
    log = api.post(f"{stack.url}/v2.1/servers/{a}/action", json={"os-getConsoleOutput": {}}, timeout=30)
    assert MARKER in log.json()["output"] and "STRATUS-SERIAL-42" in log.json()["output"]


def test_token_rules_with_real_guests(stack, guests, api):
    import websocket

    a, b = guests["con-a"], guests["con-b"]
    port = stack.novnc_port
    origin = f"http://127.0.0.1:{port}"

    def ws(token: str, extra: str = "", **kw):
        return websocket.create_connection(f"ws://127.0.0.1:{port}/?token={token}{extra}", subprotocols=["binary"],
                                           timeout=20, **{"origin": origin, **kw})

    # A's token reaches A's VNC server only, whatever else the request names.
    url_b = console_url(stack, "con-b", "novnc")
    token_a = token_of(console_url(stack, "con-a", "novnc"))
    ports = {u: int(re.search(r"<graphics type='vnc' port='(\d+)'", _virsh("dumpxml", u).stdout).group(1)) for u in (a, b)}
    assert ports[a] != ports[b]
    conn = ws(token_a, f"&host=127.0.0.1&port={ports[b]}&instance={b}")
    try:
        assert _rfb_desktop_name(conn) == f"QEMU ({a})"
    finally:
        conn.close()
    assert f"instance={a} client=127.0.0.1 result=accepted target=127.0.0.1:{ports[a]}" in stack.log("novncproxy")

    # A foreign Origin is refused (and does not burn the token).
    token_b = token_of(url_b)
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        ws(token_b, origin="http://attacker.example")
    assert exc.value.status_code == 403
    # An expired token is refused.
    set_expires(stack, token_b, int(time.time()) - 1)
    with pytest.raises(websocket.WebSocketBadStatusException):
        ws(token_b)
    log = stack.log("novncproxy")
    assert f"instance={b} client=127.0.0.1 result=refused (Origin 'http://attacker.example' is not allowed)" in log
    assert f"instance={b} client=127.0.0.1 result=refused (token expired)" in log

    # Deleting the instance invalidates its tokens.
    fresh_b = token_of(console_url(stack, "con-b", "novnc"))
    spice_b = token_of(console_url(stack, "con-b", "spice"))
    stack.openstack("server", "delete", "--wait", "con-b")
    with sqlite3.connect(stack.state_dir / "stratus.sqlite", timeout=30) as c:
        assert c.execute("SELECT count(*) FROM console_auth_tokens WHERE instance_uuid=?", (b,)).fetchone()[0] == 0
    with pytest.raises(websocket.WebSocketBadStatusException):
        ws(fresh_b)
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"ws://127.0.0.1:{stack.spice_port}/?token={spice_b}", timeout=20,
                                    origin=f"http://127.0.0.1:{stack.spice_port}", subprotocols=["binary"])
    assert "result=refused (unknown token)" in stack.log("novncproxy")
    assert b not in _domains()
