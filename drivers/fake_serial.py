"""The fake guest's serial port as a raw TCP listener, as QEMU offers libvirt's ``<serial type='tcp'>`` in bind
mode, so the serial console's whole path (API, token, proxy) runs without QEMU.

A client that connects reads the guest's console as it stands, then each line the guest prints later (its boot
ends in a login prompt), with a tty's CRLF line ends; what it types is echoed back, Enter as CRLF, as a terminal in cooked mode shows it. Listeners are
opened on first use on ``127.0.0.1`` with a port of the serial range, one per guest, and closed with the guest.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable

from drivers import serial_ports

LOG = logging.getLogger(__name__)
ADDRESS = "127.0.0.1"
POLL_SECONDS = 0.5  # how often a connected client's console is checked for new lines


def _tty(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()

_lock = threading.Lock()
_listeners: dict[str, "Listener"] = {}  # owner ("<host>/<uuid>") -> its listener


class Listener:
    def __init__(self, sock: socket.socket, screen: Callable[[], str]):
        self.sock, self.screen = sock, screen
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._accept, name=f"fake-serial-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """The console as it stands, then what the guest prints later (as a serial port streams it) and the echo
        of what the client types."""
        with conn:
            try:
                shown = self.screen()
                conn.sendall(_tty(shown))
                while True:
                    if select.select([conn], [], [], POLL_SECONDS)[0]:
                        if not (data := conn.recv(4096)):
                            return
                        conn.sendall(data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").replace(b"\r", b"\r\n"))
                    now = self.screen()
                    if now != shown:
                        if now.startswith(shown):  # else the log was cut at its cap: nothing new to tell
                            conn.sendall(_tty(now[len(shown):]))
                        shown = now
            except Exception as exc:  # the guest is gone, or the client went away
                LOG.debug("fake serial console on port %s: %s", self.port, exc)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def open_port(owner: str, port_range: str, screen: Callable[[], str]) -> int:
    """The port ``owner``'s serial console listens on (opened now if it is not yet)."""
    with _lock:
        found = _listeners.get(owner)
        if found is not None:
            return found.port
        for _attempt in range(20):  # another process may bind the port between the check and our bind
            port = serial_ports.acquire(ADDRESS, owner, port_range)
            sock = socket.socket()
            try:
                sock.bind((ADDRESS, port))
            except OSError:
                sock.close()
                serial_ports.release(owner)
                continue
            sock.listen(4)
            _listeners[owner] = Listener(sock, screen)
            return port
    raise serial_ports.PortRangeExhausted(ADDRESS)


def close_port(owner: str) -> None:
    with _lock:
        listener = _listeners.pop(owner, None)
    if listener is not None:
        listener.close()
    serial_ports.release(owner)
