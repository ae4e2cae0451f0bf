"""TCP ports for guests' serial consoles (nova/console/serial.py, with what its TODO asks for).

A port is handed out from ``serial_port_range`` ("start:stop", stop excluded, as Nova) for one listen address
when no one holds it: not reserved in this process, not in ``in_use`` (the ports the hypervisor's defined guests
already name, running or not: a stopped guest's port must not go to another guest), and bindable now (nothing
else on the machine listens there). Reservations are per process and keyed by owner (an instance UUID), so
asking again for the same owner gives the same port and ``release`` frees it.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable

from drivers.base import HostLocalError

LOG = logging.getLogger(__name__)
DEFAULT_RANGE = "10000:20000"  # Nova's DEFAULT_PORT_RANGE

_lock = threading.Lock()
_reserved: dict[tuple[str, int], str] = {}  # (address, port) -> owner


class PortRangeExhausted(HostLocalError):
    """No free port in the range (another host may have one: the boot is rescheduled)."""

    def __init__(self, address: str):
        super().__init__(f"Not able to acquire a free port for {address}")  # Nova's message


def parse_range(text: str) -> tuple[int, int]:
    """(start, stop) of "start:stop"; an invalid range falls back to the default with a warning, as in Nova."""
    try:
        start, stop = (int(part) for part in text.split(":"))
        if 0 < start < stop <= 65536:
            return start, stop
    except ValueError:
        pass
    LOG.warning("serial_port_range should be <start>:<stop> with start < stop; %r is invalid, using %s",
                text, DEFAULT_RANGE)
    start, stop = (int(part) for part in DEFAULT_RANGE.split(":"))
    return start, stop


def bindable(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def acquire(address: str, owner: str, port_range: str, in_use: Iterable[int] = ()) -> int:
    """A port of ``port_range`` on ``address`` for ``owner`` (the one it already holds, if any)."""
    taken = set(in_use)
    with _lock:
        for (addr, port), holder in _reserved.items():
            if addr == address and holder == owner:
                return port
        start, stop = parse_range(port_range)
        for port in range(start, stop):
            if (address, port) in _reserved or port in taken or not bindable(address, port):
                continue
            _reserved[(address, port)] = owner
            return port
    raise PortRangeExhausted(address)


def release(owner: str) -> None:
    """Free every port ``owner`` holds in this process."""
    with _lock:
        for key in [key for key, holder in _reserved.items() if holder == owner]:
            del _reserved[key]


def held(owner: str) -> list[tuple[str, int]]:
    with _lock:
        return [key for key, holder in _reserved.items() if holder == owner]
