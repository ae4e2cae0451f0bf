"""Console proxies on websockify: noVNC (``python -m proxies.novnc``, port 6080), SPICE HTML5
(``python -m proxies.spicehtml5``, port 6082) and the serial console (``python -m proxies.serial``, port 6083,
nova-serialproxy's role).

Each proxy turns a WebSocket into a TCP connection to the guest's VNC/SPICE server or serial port (a raw byte
stream, as nova-serialproxy passes it), for a token the API issued (``app/compute/console_urls.py``). The noVNC
and SPICE proxies also serve their web client's files (Debian's ``novnc`` and ``spice-html5`` packages); the
serial proxy serves no pages (its URL is the WebSocket's, for Horizon's serial console or any terminal client).

Rules, checked before any byte reaches a guest:
- the ``Origin`` header (when a browser sends one) names an allowed host (``console_allowed_origins``, default:
  the hosts of ``novncproxy_base_url`` / ``html5proxy_base_url`` / ``serial_base_url``) with the expected scheme
  (for the serial base URL, as Nova's verify_origin_proto: ws allows http, wss https);
- the token (``?token=`` in the WebSocket URL, or the ``token`` cookie spice_auto.html sets) exists, is of this
  proxy's console type, has not expired and was not used: the first connection consumes it through the
  conductor (a conditional UPDATE, so two connections racing for one token cannot both win);
- the proxy connects only to the host/port recorded with the token.

SPICE opens one WebSocket per channel. Its first (main) channel consumes the token; the session's other channels
(display, inputs, cursor, ...) may reuse it from the same client address within ``console_spice_channel_window``
seconds. The proxy reads each SPICE connection's link message to tell them apart, so opening the URL a second
time (a new main channel) is refused like a reused noVNC token. A token that no channel could use (unknown, of
the other type, expired, or used by another client or beyond the window) is refused with an HTTP 403 instead of
the upgrade, so no WebSocket is ever opened for it.

websockify forks one process per connection (as nova-novncproxy does); the listener itself never opens a database
or broker connection, so nothing is shared across the fork.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import struct
import sys
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session
from websockify import websocketproxy, websockifyserver

from core.crypto import token_hash
from core.db import read_session
from core.errors import ApiError
from core.models import ConsoleAuthToken, Instance
from core.settings import Settings, get_settings
from tasks.messaging import rpc

LOG = logging.getLogger("stratus.console_proxy")

SPICE_LINK_MAGIC = b"REDQ"
SPICE_CHANNEL_MAIN = 1

CONSOLE_TYPES = {
    # console type: (protocol, web root setting, port setting, base URL setting, file aliases)
    "novnc": ("vnc", "novnc_web", "novncproxy_port", "novncproxy_base_url",
              # Nova's URLs name vnc_auto.html; noVNC 1.x's auto-connecting page is vnc_lite.html (Debian's
              # vnc_auto.html is a link to the full vnc.html, which waits for a click).
              {"vnc_auto.html": "vnc_lite.html"}),
    "spice-html5": ("spice", "spicehtml5_web", "spicehtml5proxy_port", "html5proxy_base_url", {}),
    "serial": ("serial", None, "serialproxy_port", "serial_base_url", {}),
}
WEB_PACKAGES = {"vnc": "novnc", "spice": "spice-html5"}  # Debian packages of the web clients
WS_ORIGIN_SCHEMES = {"ws": "http", "wss": "https"}


class Refused(Exception):
    def __init__(self, reason: str, code: int = 403):
        super().__init__(reason)
        self.reason, self.code = reason, code


def allowed_origins(cfg: Settings) -> tuple[set[str], set[str]]:
    """(allowed host names or full origins, allowed schemes)."""
    bases = [urlsplit(getattr(cfg, spec[3])) for spec in CONSOLE_TYPES.values()]
    entries = {o.strip().lower().rstrip("/") for o in cfg.console_allowed_origins.split(",") if o.strip()}
    if not entries:
        entries = {b.hostname.lower() for b in bases if b.hostname}
    schemes = {WS_ORIGIN_SCHEMES.get(b.scheme.lower(), b.scheme.lower()) for b in bases if b.scheme}
    if cfg.console_ssl_cert:
        schemes.add("https")
    return entries, schemes


def check_origin(origin: str | None, forwarded_proto: str | None, cfg: Settings) -> None:
    """Raise Refused unless a browser's Origin is allowed. No Origin header: a non-browser client (allowed, as in
    Nova; it still needs a token)."""
    if origin is None:
        return
    entries, schemes = allowed_origins(cfg)
    parts = urlsplit(origin.strip())
    hostname, scheme = (parts.hostname or "").lower(), (forwarded_proto or parts.scheme or "").lower()
    if not hostname or not scheme:
        raise Refused(f"invalid Origin {origin!r}")
    full = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
    if hostname not in entries and full not in entries:
        raise Refused(f"Origin {origin!r} is not allowed")
    if scheme not in schemes:
        raise Refused(f"Origin scheme {scheme!r} does not match this proxy")


def parse_spice_link(data: bytes) -> tuple[int, int]:
    """(connection_id, channel_type) of a SPICE client's first message (SpiceLinkHeader + SpiceLinkMess)."""
    if len(data) < 22 or data[:4] != SPICE_LINK_MAGIC:
        raise Refused("not a SPICE link message")
    connection_id, channel_type = struct.unpack_from("<IB", data, 16)
    return connection_id, channel_type


class ConsoleProxyHandler(websocketproxy.ProxyRequestHandler):
    """Serves the web client files; validates Origin and token before the WebSocket upgrade."""

    def log_message(self, format: str, *args) -> None:  # websockify's per-request chatter
        LOG.debug("%s %s", self.client_address[0], format % args)

    # -- static files ---------------------------------------------------------------------------------------------
    def translate_path(self, path: str) -> str:
        server = self.server
        self.directory = server.web_root or os.devnull
        name = urlsplit(path).path.lstrip("/")
        alias = server.aliases.get(name)
        if alias and os.path.exists(os.path.join(server.web_root, alias)):
            path = "/" + alias
        return super().translate_path(path)

    def send_head(self):
        if self.server.web_root is None:
            self.send_error(404, f"The {self.server.console_type} console proxy serves no pages: open a WebSocket "
                                 f"with the URL the API gave")
            return None
        if not os.path.isdir(self.server.web_root):  # the proxy still proxies; only its pages are missing
            self.send_error(404, f"The {self.server.console_type} web client is not installed here "
                                 f"({self.server.web_root}): apt-get install {WEB_PACKAGES[self.server.protocol]}")
            return None
        return super().send_head()

    def end_headers(self) -> None:
        if not getattr(self, "_upgrading", False):
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
        super().end_headers()

    # -- WebSocket ------------------------------------------------------------------------------------------------
    def _token(self) -> str:
        args = parse_qs(urlsplit(self.path).query)
        if args.get("token") and args["token"][0]:
            return args["token"][0].strip()
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed cookie header is the same as none
            pass
        if "token" in cookie and cookie["token"].value:
            return cookie["token"].value.strip()
        raise Refused("no token")

    def _result(self, result: str, instance: str | None = None, target: str | None = None) -> None:
        LOG.info("console connection type=%s instance=%s client=%s result=%s%s", self.server.console_type,
                 instance or "-", self.client_address[0], result, f" target={target}" if target else "")

    def handle_upgrade(self) -> None:
        self._upgrading = True
        self.console: dict | None = None
        self.token_digest: str | None = None
        try:
            try:  # parsed first only so that every log line can name the instance
                self.token_digest = token_hash(self._token())
            except Refused:
                self.token_digest = None
            check_origin(self.headers.get("Origin"), self.headers.get("X-Forwarded-Proto"), self.server.settings)
            if self.token_digest is None:
                raise Refused("no token")
            if self.server.protocol != "spice":
                # One WebSocket per console: consume the token now, so a refusal is a plain HTTP 403.
                self.console = self._consume()
            else:
                # Whether this connection may consume the token depends on its SPICE channel, which its first
                # message tells; refuse what no channel could use before upgrading, so a bad, used or expired
                # token never holds a WebSocket open.
                row = self._lookup()
                if row is None:
                    raise Refused("unknown token")
                if row.console_type != self.server.console_type:
                    raise Refused(f"token is for a {row.console_type} console")
                if row.used_at is None and row.expires <= int(time.time()):
                    raise Refused("token expired")
                if row.used_at is not None and not self._may_join(row):
                    raise Refused("token already used")
        except Refused as exc:
            self._result(f"refused ({exc.reason})", instance=self._instance_of_refused())
            self._upgrading = False
            self.send_error(exc.code, exc.reason)
            return
        super().handle_upgrade()

    def _instance_of_refused(self) -> str | None:
        """The instance a refused token belongs to, for the log line (read-only; None if unknown)."""
        if not self.token_digest:
            return None
        try:
            row = self._lookup()
        except Exception:  # logging must not fail the refusal
            return None
        return row.instance_uuid if row is not None else None

    def _token_row(self, s: Session) -> ConsoleAuthToken | None:
        return s.scalars(sa.select(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == self.token_digest)).first()

    def _lookup(self) -> ConsoleAuthToken | None:
        with read_session() as s:
            return self._token_row(s)

    def _consume(self) -> dict:
        try:
            return rpc.call("stratus.conductor.consume_console_token", self.token_digest, self.server.console_type,
                            self.client_address[0], timeout=15,
                            argsrepr=repr((self.token_digest[:8] + "...", self.server.console_type,
                                           self.client_address[0])))
        except ApiError as exc:
            raise Refused(exc.message, 503 if exc.code == 503 else 403) from None

    def _may_join(self, row: ConsoleAuthToken) -> bool:
        """Whether a used SPICE token still admits its session's other channels from this client."""
        window = self.server.settings.console_spice_channel_window
        return row.used_by == self.client_address[0] and int(time.time()) <= row.used_at + window

    def _spice_channel_session(self) -> dict:
        """A secondary SPICE channel: allowed for the token's consuming client within the channel window."""
        with read_session() as s:
            row = self._token_row(s)
            if row is None:
                raise Refused("unknown token")
            if row.console_type != self.server.console_type:
                raise Refused(f"token is for a {row.console_type} console")
            if row.used_at is None:
                raise Refused("SPICE channel before the session's main channel")
            if not self._may_join(row):
                raise Refused("token already used")
            live = s.scalar(sa.select(Instance.id).where(Instance.uuid == row.instance_uuid, Instance.deleted == 0))
            if live is None:
                raise Refused("instance is gone")
            return {"host": row.host, "port": row.port, "instance_uuid": row.instance_uuid}

    def _read_first_message(self, timeout: float = 10.0) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < 22:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not (self.request.pending() or select.select([self.request], [], [], remaining)[0]):
                raise Refused("no SPICE link message")
            bufs, closed = self.recv_frames()
            data += b"".join(bufs)
            if closed:
                raise Refused("client closed before its link message")
        return data

    def new_websocket_client(self) -> None:
        first = b""
        try:
            if self.server.protocol == "spice":
                first = self._read_first_message()
                connection_id, channel = parse_spice_link(first)
                if channel == SPICE_CHANNEL_MAIN and connection_id == 0:
                    self.console = self._consume()
                else:
                    self.console = self._spice_channel_session()
        except Refused as exc:
            self._result(f"refused ({exc.reason})", instance=self._instance_of_refused())
            raise self.CClose(1008, exc.reason) from None
        console = self.console
        assert console is not None
        target = f"{console['host']}:{console['port']}"
        try:
            tsock = websockifyserver.WebSockifyServer.socket(console["host"], int(console["port"]), connect=True)
        except Exception as exc:
            self._result(f"failed (cannot reach the guest's console: {exc})", console["instance_uuid"], target)
            raise self.CClose(1011, "Failed to connect to the console") from None
        self._result("accepted", console["instance_uuid"], target)
        tsock.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
        self.request.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
        started = time.monotonic()
        try:
            if first:
                tsock.sendall(first)
            self.do_proxy(tsock)
        finally:
            LOG.debug("console connection type=%s instance=%s client=%s closed after %.1f s",
                      self.server.console_type, console["instance_uuid"], self.client_address[0],
                      time.monotonic() - started)
            try:
                tsock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tsock.close()


def build_server(console_type: str, cfg: Settings | None = None, port: int | None = None
                 ) -> websocketproxy.WebSocketProxy:
    cfg = cfg or get_settings()
    protocol, web_key, port_key, _base_key, aliases = CONSOLE_TYPES[console_type]
    web_root = os.path.abspath(getattr(cfg, web_key)) if web_key else None
    if web_root and not os.path.isdir(web_root):  # the embedded default without apt: its pages say what to install
        LOG.warning("%s proxy: web client directory %s is missing (Debian package %s); its pages answer 404",
                    console_type, web_root, WEB_PACKAGES[protocol])
    tls = bool(cfg.console_ssl_cert)
    if tls and not os.path.exists(cfg.console_ssl_cert):
        raise SystemExit(f"{console_type} proxy: console_ssl_cert {cfg.console_ssl_cert} does not exist")
    options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).options | ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
    server = websocketproxy.WebSocketProxy(
        RequestHandlerClass=ConsoleProxyHandler, listen_host=cfg.console_proxy_listen,
        listen_port=port if port is not None else getattr(cfg, port_key),
        cert=cfg.console_ssl_cert if tls else "", key=cfg.console_ssl_key or None, ssl_only=tls,
        ssl_options=options, web="", file_only=True, target_host="ignore", target_port=0)
    # Serve files without websockify's chdir into the web root (this process imports modules lazily).
    server.only_upgrade = False
    server.file_only = True
    server.web_root = web_root
    server.aliases = aliases
    server.console_type = console_type
    server.protocol = protocol
    server.settings = cfg
    return server


def main(console_type: str) -> None:
    cfg = get_settings()
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websocket").setLevel(logging.WARNING)
    # rpc.call loads the Celery app on its first call: load it once here, before websockify forks a process per
    # connection, so that no connection pays for it (importing opens no database or broker connection).
    import tasks.messaging.celery_app  # noqa: F401
    server = build_server(console_type, cfg)
    entries, schemes = allowed_origins(cfg)
    LOG.info("%s proxy on %s://%s:%s serving %s; allowed origins %s (%s)", console_type,
             "https" if cfg.console_ssl_cert else "http", server.listen_host, server.listen_port,
             server.web_root or "no pages",
             ",".join(sorted(entries)), ",".join(sorted(schemes)))
    server.start_server()
