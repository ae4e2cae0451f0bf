"""The per-host metadata proxy: run on a compute host of a cloud spread over machines (``python -m metadata.proxy``).

Guests on this host reach http://169.254.169.254; the host's bridge DNATs that to ``metadata_proxy_bind``
(``tools/stratus-network up``: <gateway>:8775), where this proxy relays each request to the central service
(``metadata_url``) with the guest's address (``X-Forwarded-For``: the TCP source, never a header the guest sent),
this host's name and both signed with this host's key (``metadata/signing.py``). The service identifies the
instance by that address, as for a guest on its own machine, and serves it only if the database places the
instance on this host: a guest that takes another's address, here or on another host, gets 404.

Why not route guests' packets to the central service: their source address would have to survive the trip
(no SNAT, a route back to every host's guests), and the service could not tell which host a packet came from,
so a guest spoofing the address of a guest on another host would read its metadata. Why not Nova's
X-Instance-ID with one shared secret: every compute host would hold the key to every instance's metadata.

No Flask, no database: the proxy needs only the service's URL and its host key (``python -m metadata.proxy key
HOST`` prints it on the controller, from ``metadata_proxy_shared_secret``).
"""
from __future__ import annotations

import http.client
import ipaddress
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from core.settings import Settings, get_settings
from metadata.signing import ADDRESS_HEADER, HOST_HEADER, HOST_SIGNATURE_HEADER, host_key, host_signature

LOG = logging.getLogger("stratus.metadata_proxy")
MAX_BODY = 64 * 1024  # a guest posts at most its password (256 bytes); the service says what is too large
TIMEOUT = 30.0


def proxy_host(cfg: Settings) -> str:
    return cfg.metadata_proxy_host or cfg.host_names[0]


def bind_address(cfg: Settings) -> tuple[str, int]:
    """Where the bridge's DNAT sends guests: ``metadata_proxy_bind``, else the network's gateway, port 8775."""
    if cfg.metadata_proxy_bind:
        host, _, port = cfg.metadata_proxy_bind.rpartition(":")
        return host.strip("[]"), int(port)
    return str(next(ipaddress.ip_network(cfg.network_cidr, strict=False).hosts())), 8775


class RelayHandler(BaseHTTPRequestHandler):
    server: "MetadataProxy"
    server_version = "StratusMetadataProxy"

    def log_message(self, format: str, *args) -> None:
        LOG.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=UTF-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(self) -> None:
        if not self.path.startswith("/"):
            self._answer(400, b"400 Bad Request\n")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._answer(400, b"400 Request is too large.\n")
            return
        body = self.rfile.read(length) if length else None
        srv = self.server
        address = self.client_address[0]
        # Only what the proxy vouches for: nothing the guest sent (identity headers included) is passed on.
        headers = {ADDRESS_HEADER: address, HOST_HEADER: srv.host,
                   HOST_SIGNATURE_HEADER: host_signature(srv.key, srv.host, address)}
        if body is not None:
            headers["Content-Type"] = self.headers.get("Content-Type") or "application/octet-stream"
        try:
            conn = srv.connection()
            try:
                conn.request(self.command, srv.base_path + self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            LOG.warning("metadata request from %s: the metadata service at %s is unreachable: %s", address,
                        srv.url, exc)
            self._answer(500, b"500 Internal Server Error\n")
            return
        self._answer(resp.status, data, resp.getheader("Content-Type") or "text/plain; charset=UTF-8")


class MetadataProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cfg: Settings):
        if not cfg.metadata_url or not cfg.metadata_host_key:
            raise SystemExit("metadata proxy: set metadata_url and metadata_host_key (python -m metadata.proxy "
                             "key HOST on the controller prints the key)")
        self.url = cfg.metadata_url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(f"metadata proxy: metadata_url {cfg.metadata_url!r} is not an http(s) URL")
        self.scheme, self.netloc, self.base_path = parts.scheme, parts.netloc, parts.path
        self.host, self.key = proxy_host(cfg), cfg.metadata_host_key
        super().__init__(bind_address(cfg), RelayHandler)

    def connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=TIMEOUT)


def main(argv: list[str]) -> None:
    cfg = get_settings()
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["key"] and len(argv) == 2:
        if not cfg.metadata_proxy_shared_secret:
            raise SystemExit("metadata proxy: metadata_proxy_shared_secret is not set here (run this on the "
                             "controller, where the metadata service runs)")
        print(host_key(cfg.metadata_proxy_shared_secret, argv[1]))
        return
    if argv:
        raise SystemExit("usage: python -m metadata.proxy [key HOST]")
    server = MetadataProxy(cfg)
    LOG.info("metadata proxy for host %s on %s:%d -> %s", server.host, *server.server_address[:2], server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
