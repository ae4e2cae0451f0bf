"""The per-host metadata proxy (metadata/proxy.py) in one process: what it relays to the central service, and
the signing rule the service checks (metadata/signing.py). The service's side, with two hosts, is
tests/functional/test_guests_on_any_host.py."""
from __future__ import annotations

import http.client
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.settings import Settings
from metadata import proxy
from metadata.signing import host_key, host_signature, valid_host_signature

SECRET = "s3cret"


def test_host_keys_and_signatures_bind_host_and_address():
    key_a, key_b = host_key(SECRET, "host-a"), host_key(SECRET, "host-b")
    assert key_a != key_b and SECRET not in key_a
    sig = host_signature(key_a, "host-a", "10.0.0.5")
    assert valid_host_signature(SECRET, "host-a", "10.0.0.5", sig)
    assert not valid_host_signature(SECRET, "host-b", "10.0.0.5", sig)  # another host's name
    assert not valid_host_signature(SECRET, "host-a", "10.0.0.6", sig)  # another address
    assert not valid_host_signature("other", "host-a", "10.0.0.5", sig)  # another cloud's secret
    assert not valid_host_signature(SECRET, "host-b", "10.0.0.5", host_signature(key_a, "host-b", "10.0.0.5"))


def test_bind_address_defaults_to_the_gateway():
    assert proxy.bind_address(Settings(network_cidr="10.77.0.0/24")) == ("10.77.0.1", 8775)
    assert proxy.bind_address(Settings(metadata_proxy_bind="127.0.0.2:9999")) == ("127.0.0.2", 9999)
    assert proxy.proxy_host(Settings(compute_hosts="h1,h2")) == "h1"
    assert proxy.proxy_host(Settings(compute_hosts="h1", metadata_proxy_host="h9")) == "h9"


@pytest.fixture
def upstream():
    """A stand-in for the central service that records each request's method, path, headers and body."""
    seen: list[tuple[str, str, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _record(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        do_GET = do_POST = _record

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], seen
    srv.shutdown()
    srv.server_close()


def test_proxy_relays_the_tcp_source_signed_and_drops_guest_headers(upstream):
    port, seen = upstream
    cfg = Settings(metadata_url=f"http://127.0.0.1:{port}/md", metadata_proxy_bind="127.0.0.1:0",
                   metadata_proxy_host="host-a", metadata_host_key=host_key(SECRET, "host-a"))
    srv = proxy.MetadataProxy(cfg)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10,
                                          source_address=("127.0.0.9", 0))
        conn.request("POST", "/openstack/latest/password", body=b"pw", headers={
            "X-Forwarded-For": "10.0.0.99", "X-Instance-ID": "other", "X-Stratus-Host": "host-b",
            "X-Stratus-Host-Signature": "f" * 64})
        resp = conn.getresponse()
        assert (resp.status, resp.read(), resp.getheader("Content-Type")) == (200, b"{}", "application/json")
        conn.close()
    finally:
        srv.shutdown()
        srv.server_close()
    method, path, headers, body = seen[0]
    assert (method, path, body) == ("POST", "/md/openstack/latest/password", b"pw")
    assert headers["X-Forwarded-For"] == "127.0.0.9" and headers["X-Stratus-Host"] == "host-a"
    assert valid_host_signature(SECRET, "host-a", "127.0.0.9", headers["X-Stratus-Host-Signature"])
    assert "X-Instance-ID" not in headers


def test_proxy_loads_no_flask_and_no_database_driver():
    code = ("import sys, metadata.proxy; bad = [m for m in ('flask', 'sqlalchemy', 'psycopg', 'pymysql') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("setting,host,allowed", [
    ("*", "h1", True), ("*", None, True), ("h1,h2", "h2", True), ("h1", "h2", False), ("none", "h1", False),
    ("", "h1", False), ("h1", None, False),
])
def test_direct_hosts(setting, host, allowed):
    from metadata.api import direct_host_allowed  # noqa: PLC0415 (the service's module loads Flask)
    assert direct_host_allowed(setting, host) is allowed
