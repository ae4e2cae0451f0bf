"""The built-in flat network, derived from settings (read-only helpers; the conductor allocates addresses).

Its UUID is a UUIDv5 of its name and CIDR, so every process (API, conductor, metadata) agrees on it before the
conductor has written its row, and `GET /os-networks` can list it on a fresh cloud.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import uuid
from collections.abc import Iterator

from core.settings import Settings, get_settings

_NAMESPACE = uuid.UUID("5f0c8a52-2d4e-4c1e-9a8e-7e0b9f6a1c33")


@dataclasses.dataclass(frozen=True)
class NetworkInfo:
    id: str
    name: str
    cidr: str
    gateway: str
    netmask: str
    prefixlen: int
    broadcast: str
    bridge: str

    @property
    def subnet_id(self) -> str:
        """The id of its one subnet in the Networking API (as stable as the network's own)."""
        return subnet_id_of(self.id, self.cidr)

    def allocation_pools(self) -> list[dict[str, str]]:
        """The pool as Neutron's ``allocation_pools``: ranges of host addresses around the gateway."""
        net = ipaddress.ip_network(self.cidr)
        first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
        gateway = int(ipaddress.ip_address(self.gateway))
        ranges = [(first, gateway - 1), (gateway + 1, last)] if first <= gateway <= last else [(first, last)]
        return [{"start": str(ipaddress.ip_address(a)), "end": str(ipaddress.ip_address(b))}
                for a, b in ranges if a <= b]

    def pool(self) -> Iterator[str]:
        """Addresses guests may get: every host address but the gateway's."""
        for addr in ipaddress.ip_network(self.cidr).hosts():
            if str(addr) != self.gateway:
                yield str(addr)


def subnet_id_of(network_id: str, cidr: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"subnet|{network_id}|{cidr}"))


def builtin(settings: Settings | None = None) -> NetworkInfo:
    cfg = settings or get_settings()
    net = ipaddress.ip_network(cfg.network_cidr, strict=False)
    if net.version != 4 or net.num_addresses < 4:
        raise ValueError(f"network_cidr must be an IPv4 network with room for guests, not {cfg.network_cidr!r}")
    gateway = str(next(net.hosts()))
    return NetworkInfo(id=str(uuid.uuid5(_NAMESPACE, f"{cfg.network_name}|{net}")), name=cfg.network_name,
                       cidr=str(net), gateway=gateway, netmask=str(net.netmask), prefixlen=net.prefixlen,
                       broadcast=str(net.broadcast_address), bridge=cfg.network_bridge)


def wants_network(networks_request: object) -> bool:
    """Does a server's `networks` request ("auto" | "none" | [{"uuid": ...}]) ask for an address?"""
    if networks_request in (None, "auto"):
        return True
    if networks_request == "none":
        return False
    return bool(networks_request)


def requested_tag(networks_request: object) -> str | None:
    """The device tag of the (single) ``networks`` entry, if it has one."""
    if isinstance(networks_request, list) and networks_request and isinstance(networks_request[0], dict):
        return networks_request[0].get("tag")
    return None


def random_mac() -> str:
    """A MAC in OpenStack's fa:16:3e prefix (as Neutron's base_mac)."""
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
