"""Console API and token rules against real processes (fake driver, SQLite + filesystem broker), with the noVNC,
SPICE HTML5 and serial proxies running from the Procfile. The real-guest, real-browser proof is
tests/integration/test_console_browser.py."""
from __future__ import annotations

import hashlib
import socket
import sqlite3
import struct
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import websocket  # websocket-client

from harness.stack import BACKENDS, Stack, console_proxy_env, wait_port

pytestmark = pytest.mark.services

MV = {"OpenStack-API-Version": "compute 2.96"}


@pytest.fixture(scope="module")
def cstack(tmp_path_factory):
    env, novnc, spice = console_proxy_env()
    st = Stack(tmp_path_factory.mktemp("consoles"), BACKENDS["sqlite-filesystem"], compute_hosts="fake-1",
               extra_env=env, processes=("api", "conductor", "scheduler", "compute", "novncproxy",
                                         "spicehtml5proxy", "serialproxy"))
    st.novnc_port, st.spice_port, st.serial_port = novnc, spice, int(env["STRATUS_SERIALPROXY_PORT"])
    try:
        st.start()
        for port in (novnc, spice, st.serial_port):
            wait_port(port)
    except Exception:
        st.stop()
        raise
    st.session = requests.Session()
    st.session.headers.update({"X-Auth-Token": st.admin_token(), **MV})
    yield st
    st.stop()


def active_server(st, name: str, **fields) -> str:
    """An ACTIVE fake server's id (``fields`` go into the create body: networks, host, ...)."""
    s = st.session
    if not hasattr(st, "image_id"):
        img = s.post(f"{st.url}/image/v2/images", json={"name": "console-img", "disk_format": "raw",
                                                         "container_format": "bare"}).json()
        s.put(f"{st.url}/image/v2/images/{img['id']}/file", data=b"x" * 512,
              headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        st.image_id = img["id"]
    r = s.post(f"{st.url}/v2.1/servers", json={"server": {"name": name, "imageRef": st.image_id, "flavorRef": "42",
                                                           "networks": "none", **fields}})
    assert r.status_code == 202, r.text
    uuid = r.json()["server"]["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = s.get(f"{st.url}/v2.1/servers/{uuid}").json()["server"]["status"]
        if status == "ACTIVE":
            return uuid
        assert status == "BUILD", status
        time.sleep(0.1)
    raise AssertionError(f"{name} did not become ACTIVE")


@pytest.fixture(scope="module")
def server(cstack):
    return active_server(cstack, "console-a")


def remote_console(st, uuid: str, protocol: str = "vnc", type_: str = "novnc", **kw) -> requests.Response:
    return st.session.post(f"{st.url}/v2.1/servers/{uuid}/remote-consoles",
                           json={"remote_console": {"protocol": protocol, "type": type_}}, **kw)


def url_of(st, uuid: str, protocol: str = "vnc", type_: str = "novnc") -> str:
    r = remote_console(st, uuid, protocol, type_)
    assert r.status_code == 200, r.text
    return r.json()["remote_console"]["url"]


def token_of(url: str) -> str:
    q = parse_qs(urlsplit(url).query)
    if "token" in q:
        return q["token"][0]
    return parse_qs(urlsplit(unquote(q["path"][0])).query)["token"][0]


def db(st) -> sqlite3.Connection:
    return sqlite3.connect(st.state_dir / "stratus.sqlite", timeout=30)


def ws_url(port: int, token: str) -> str:
    return f"ws://127.0.0.1:{port}/?token={token}"


def connect(port: int, token: str, origin: str | None = "default", **kw) -> websocket.WebSocket:
    if origin == "default":
        origin = f"http://127.0.0.1:{port}"
    return websocket.create_connection(ws_url(port, token), origin=origin, subprotocols=["binary"], timeout=10,
                                       suppress_origin=origin is None, **kw)


def refused(port: int, token: str, **kw) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        connect(port, token, **kw)
    return exc.value.status_code


def spice_link(channel_type: int, connection_id: int = 0) -> bytes:
    mess = struct.pack("<IBBIII", connection_id, channel_type, 0, 1, 0, 18) + struct.pack("<I", 0b1011)
    return b"REDQ" + struct.pack("<III", 2, 2, len(mess)) + mess


# --- API --------------------------------------------------------------------------------------------------------

def test_remote_console_urls_and_token_storage(cstack, server):
    r = remote_console(cstack, server)
    assert r.status_code == 200, r.text
    body = r.json()["remote_console"]
    assert body["protocol"] == "vnc" and body["type"] == "novnc"
    assert body["url"].startswith(f"http://127.0.0.1:{cstack.novnc_port}/vnc_auto.html?path=%3Ftoken%3D")
    token = token_of(body["url"])
    assert len(token) >= 40
    with db(cstack) as c:
        rows = c.execute("SELECT token_hash, console_type, host, port, instance_uuid, expires FROM "
                         "console_auth_tokens WHERE instance_uuid=?", (server,)).fetchall()
    digest = hashlib.sha256(token.encode()).hexdigest()
    stored = {row[0]: row for row in rows}
    assert digest in stored, "only the token's SHA-256 is stored"
    assert not any(token in str(row) for row in rows), "the token itself is never stored"
    _, ctype, host, port, _, expires = stored[digest]
    assert (ctype, host, port) == ("novnc", "127.0.0.1", 5900)
    assert 590 <= expires - time.time() <= 601

    spice = remote_console(cstack, server, "spice", "spice-html5").json()["remote_console"]
    assert spice["url"].startswith(f"http://127.0.0.1:{cstack.spice_port}/spice_auto.html?token=")

    legacy = cstack.session.post(f"{cstack.url}/v2.1/servers/{server}/action",
                                 json={"os-getVNCConsole": {"type": "novnc"}})
    assert legacy.status_code == 200 and set(legacy.json()["console"]) == {"type", "url"}
    legacy = cstack.session.post(f"{cstack.url}/v2.1/servers/{server}/action",
                                 json={"os-getSPICEConsole": {"type": "spice-html5"}})
    assert legacy.status_code == 200 and legacy.json()["console"]["type"] == "spice-html5"


@pytest.mark.parametrize("protocol,type_", [("vnc", "spice-html5"), ("spice", "novnc"), ("vnc", "bogus"),
                                            ("telnet", "novnc"), ("vnc", "xvpvnc"), ("rdp", "rdp-html5")])
def test_bad_protocol_type_combinations(cstack, server, protocol, type_):
    r = remote_console(cstack, server, protocol, type_)
    assert r.status_code == 400, r.text
    assert "badRequest" in r.json()


def test_remote_consoles_needs_2_6_and_a_live_instance(cstack, server):
    r = cstack.session.post(f"{cstack.url}/v2.1/servers/{server}/remote-consoles",
                            json={"remote_console": {"protocol": "vnc", "type": "novnc"}},
                            headers={"OpenStack-API-Version": "compute 2.5"})
    assert r.status_code == 404
    assert remote_console(cstack, "0b7f3c1e-0000-4000-8000-000000000000").status_code == 404
    r = cstack.session.post(f"{cstack.url}/v2.1/servers/{server}/action", json={"os-getVNCConsole": {}})
    assert r.status_code == 400


def test_console_of_a_stopped_instance_is_409(cstack):
    uuid = active_server(cstack, "console-stopped")
    assert cstack.session.post(f"{cstack.url}/v2.1/servers/{uuid}/action", json={"os-stop": None}).status_code == 202
    deadline = time.monotonic() + 20
    while cstack.session.get(f"{cstack.url}/v2.1/servers/{uuid}").json()["server"]["status"] != "SHUTOFF":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = remote_console(cstack, uuid)
    assert r.status_code == 409 and "is not ready" in r.text


# --- proxies ----------------------------------------------------------------------------------------------------

def test_proxies_serve_the_web_clients(cstack):
    auto = requests.get(f"http://127.0.0.1:{cstack.novnc_port}/vnc_auto.html", timeout=5)
    assert auto.status_code == 200 and "RFB" in auto.text and "readQueryVariable('path'" in auto.text, \
        "vnc_auto.html is served as noVNC's auto-connecting vnc_lite.html"
    assert requests.get(f"http://127.0.0.1:{cstack.novnc_port}/vnc_lite.html", timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{cstack.novnc_port}/core/rfb.js", timeout=5).status_code == 200
    spice = requests.get(f"http://127.0.0.1:{cstack.spice_port}/spice_auto.html", timeout=5)
    assert spice.status_code == 200 and "SpiceMainConn" in spice.text
    assert requests.get(f"http://127.0.0.1:{cstack.novnc_port}/", timeout=5).status_code == 404  # no listings
    assert requests.get(f"http://127.0.0.1:{cstack.novnc_port}/../../etc/passwd", timeout=5).status_code == 404


@pytest.fixture
def fake_vnc_server():
    """Something listening where the fake driver says the console is (127.0.0.1:5900), greeting like a VNC
    server; skipped when a real guest holds that port."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("127.0.0.1", 5900))
    except OSError:
        srv.close()
        pytest.skip("127.0.0.1:5900 is in use (a real guest's console); the fake driver's console port is fixed")
    srv.listen(8)
    seen: list[bytes] = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"RFB 003.008\n")
                conn.settimeout(5)
                try:
                    seen.append(conn.recv(1024))
                except OSError:
                    pass
    threading.Thread(target=serve, daemon=True).start()
    yield seen
    srv.close()


def test_novnc_token_is_single_use_and_proxies_to_the_recorded_endpoint(cstack, server, fake_vnc_server):
    token = token_of(url_of(cstack, server))
    ws = connect(cstack.novnc_port, token)
    try:
        assert ws.recv() == b"RFB 003.008\n"
        ws.send_binary(b"RFB 003.008\n")
        deadline = time.monotonic() + 5
        while not fake_vnc_server and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_vnc_server == [b"RFB 003.008\n"]
    finally:
        ws.close()
    assert refused(cstack.novnc_port, token) == 403, "a used token is refused"
    log = cstack.log("novncproxy")
    assert f"type=novnc instance={server} client=127.0.0.1 result=accepted target=127.0.0.1:5900" in log
    assert "result=refused (token already used)" in log


def test_novnc_refusals(cstack, server):
    port = cstack.novnc_port
    assert refused(port, "not-a-token") == 403
    assert "result=refused (unknown token)" in cstack.log("novncproxy")
    # other type: a SPICE token at the noVNC proxy (and the reverse), not consumed by the attempt
    spice_token = token_of(url_of(cstack, server, "spice", "spice-html5"))
    assert refused(port, spice_token) == 403
    vnc_token = token_of(url_of(cstack, server))
    assert refused(cstack.spice_port, vnc_token) == 403
    assert "token is for a spice-html5 console" in cstack.log("novncproxy")
    # foreign Origin: refused before the token is looked at (so it stays usable)
    assert refused(port, vnc_token, origin="http://evil.example.com") == 403
    assert refused(port, vnc_token, origin="https://127.0.0.1:1") == 403  # wrong scheme
    assert "Origin 'http://evil.example.com' is not allowed" in cstack.log("novncproxy")
    with db(cstack) as c:
        used = c.execute("SELECT used_at FROM console_auth_tokens WHERE token_hash=?",
                         (hashlib.sha256(vnc_token.encode()).hexdigest(),)).fetchone()[0]
    assert used is None
    # expired
    with db(cstack) as c:
        c.execute("UPDATE console_auth_tokens SET expires=? WHERE token_hash=?",
                  (int(time.time()) - 1, hashlib.sha256(vnc_token.encode()).hexdigest()))
    assert refused(port, vnc_token) == 403
    assert "result=refused (token expired)" in cstack.log("novncproxy")


def test_spice_channels_share_one_session_but_a_second_session_is_refused(cstack, server):
    port = cstack.spice_port
    token = token_of(url_of(cstack, server, "spice", "spice-html5"))
    # a display channel before any main channel: nothing to join
    ws = connect(port, token)
    ws.send_binary(spice_link(2, 1234))
    with pytest.raises((websocket.WebSocketException, OSError)):
        ws.recv()
        ws.recv()
    ws.close()
    # main channel consumes the token (the fake console endpoint may not answer; the proxy decides first)
    ws = connect(port, token)
    ws.send_binary(spice_link(1))
    time.sleep(0.5)
    ws.close()
    log = cstack.log("spicehtml5proxy")
    assert f"type=spice-html5 instance={server} client=127.0.0.1 result=" in log
    assert "result=refused (SPICE channel before the session's main channel)" in log
    # the session's other channels may follow from the same client
    ws = connect(port, token)
    ws.send_binary(spice_link(2, 1234))
    time.sleep(0.5)
    ws.close()
    # a second session (new main channel) with the same token is refused
    ws = connect(port, token)
    ws.send_binary(spice_link(1))
    with pytest.raises((websocket.WebSocketException, OSError)):
        ws.recv()
        ws.recv()
    ws.close()
    log = cstack.log("spicehtml5proxy")
    assert log.count(f"instance={server} client=127.0.0.1 result=accepted") + \
        log.count(f"instance={server} client=127.0.0.1 result=failed") == 2
    assert "result=refused (token already used)" in log


def test_deleting_the_instance_deletes_its_tokens(cstack):
    uuid = active_server(cstack, "console-doomed")
    token = token_of(url_of(cstack, uuid))
    url_of(cstack, uuid, "spice", "spice-html5")
    assert cstack.session.delete(f"{cstack.url}/v2.1/servers/{uuid}").status_code == 204
    deadline = time.monotonic() + 20
    while cstack.session.get(f"{cstack.url}/v2.1/servers/{uuid}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with db(cstack) as c:
        assert c.execute("SELECT count(*) FROM console_auth_tokens WHERE instance_uuid=?", (uuid,)).fetchone()[0] == 0
    assert refused(cstack.novnc_port, token) == 403


def _refused_at_once(port: int, token: str) -> None:
    """The handshake itself is refused (no WebSocket is opened), and at once."""
    started = time.monotonic()
    assert refused(port, token) == 403
    assert time.monotonic() - started < 3


def _set_token(st, token: str, **values) -> None:
    sets = ", ".join(f"{k}=?" for k in values)
    with db(st) as c:
        c.execute(f"UPDATE console_auth_tokens SET {sets} WHERE token_hash=?",
                  (*values.values(), hashlib.sha256(token.encode()).hexdigest()))


def test_bad_used_or_expired_tokens_are_refused_during_the_handshake(cstack, server, fake_vnc_server):
    """Issue 28 item 12: no WebSocket stays open for a token no channel can use; a valid SPICE main channel still
    reaches the guest byte for byte."""
    for port in (cstack.novnc_port, cstack.spice_port):
        _refused_at_once(port, "not-a-token")
    # noVNC: used, expired
    token = token_of(url_of(cstack, server))
    connect(cstack.novnc_port, token).close()
    _refused_at_once(cstack.novnc_port, token)
    token = token_of(url_of(cstack, server))
    _set_token(cstack, token, expires=int(time.time()) - 1)
    _refused_at_once(cstack.novnc_port, token)
    # SPICE: a valid main channel passes its link message through untouched
    port = cstack.spice_port
    token = token_of(url_of(cstack, server, "spice", "spice-html5"))
    ws = connect(port, token)
    ws.send_binary(spice_link(1))
    deadline = time.monotonic() + 5
    while spice_link(1) not in fake_vnc_server and time.monotonic() < deadline:
        time.sleep(0.05)
    ws.close()
    assert spice_link(1) in fake_vnc_server
    # used by another client, or beyond the channel window: no channel can use it, so no WebSocket opens
    _set_token(cstack, token, used_by="192.0.2.9")
    _refused_at_once(port, token)
    _set_token(cstack, token, used_by="127.0.0.1", used_at=int(time.time()) - 3600)
    _refused_at_once(port, token)
    # expired before use
    token = token_of(url_of(cstack, server, "spice", "spice-html5"))
    _set_token(cstack, token, expires=int(time.time()) - 1)
    _refused_at_once(port, token)
    assert cstack.log("spicehtml5proxy").count("result=refused (token already used)") >= 2


# --- serial console (issue 29 item 5) ------------------------------------------------------------------------------

def test_serial_console_through_the_cli_and_the_proxy(cstack, server):
    """The unmodified CLI's ``console url show --serial`` gives Nova's ws:// URL; a WebSocket client through the
    serial proxy reads the fake guest's console from its TCP listener and what it types comes back; the token is
    single use and refused by the other proxies."""
    out = cstack.openstack_json("console", "url", "show", "--serial", server)
    assert out["type"] == "serial" and out.get("protocol", "serial") == "serial", out
    url = out["url"]
    assert url.startswith(f"ws://127.0.0.1:{cstack.serial_port}/?token="), url
    token = token_of(url)
    assert refused(cstack.novnc_port, token) == 403, "a serial token is not a VNC one (and is not consumed)"
    ws = websocket.create_connection(url, subprotocols=["binary"], timeout=10,
                                     origin=f"http://127.0.0.1:{cstack.serial_port}")
    try:
        screen = b""
        while b"login: " not in screen:
            screen += ws.recv()
        assert b"\r\nDebian GNU/Linux 12 console-a ttyS0\r\n" in screen
        ws.send_binary(b"root\r")
        echoed = b""
        while b"root\r\n" not in echoed:
            echoed += ws.recv()
    finally:
        ws.close()
    assert refused(cstack.serial_port, token) == 403, "single use"
    log = cstack.log("serialproxy")
    assert f"type=serial instance={server} client=127.0.0.1 result=accepted target=127.0.0.1:" in log
    assert "result=refused (token already used)" in log
    assert "token is for a serial console" in cstack.log("novncproxy")
    # a page request gets a 404 that says what the URL is for, a foreign Origin a 403
    page = requests.get(f"http://127.0.0.1:{cstack.serial_port}/", timeout=5)
    assert page.status_code == 404 and "serves no pages" in page.text
    fresh = token_of(url_of(cstack, server, "serial", "serial"))
    assert refused(cstack.serial_port, fresh, origin="http://evil.example.com") == 403
    legacy = cstack.session.post(f"{cstack.url}/v2.1/servers/{server}/action",
                                 json={"os-getSerialConsole": {"type": "serial"}},
                                 headers={"OpenStack-API-Version": "compute 2.1"})
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["console"]["url"].startswith(f"ws://127.0.0.1:{cstack.serial_port}/")
