"""Hosts of their own on one machine: a Linux bridge in the root network namespace (the controller's side) and
one network namespace per compute host, each joined to the bridge by a veth pair. A host reaches the controller
only at the bridge's address (its 127.0.0.1 is its own), reaches the other hosts at theirs, and can be cut off
with iptables inside its namespace. Needs root and iproute2 (`ip netns`), as README "Several machines" says."""
from __future__ import annotations

import os
import random
import shutil
import subprocess


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("iptables"):
        return "iproute2 and iptables are not installed"
    probe = f"stratus-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class HostNetwork:
    """``add(name)`` makes host ``name``'s namespace; ``controller`` is the root side's address on the bridge."""

    def __init__(self):
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.bridge = f"stbr{tag}"[:15]
        self.subnet = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
        self.controller = f"{self.subnet}.1"
        self.hosts: dict[str, tuple[str, str]] = {}  # name -> (namespace, address)
        self._veths: list[str] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.controller}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> tuple[str, str]:
        """A namespace for host ``name``: (namespace name, its address on the bridge)."""
        index = len(self.hosts) + 10
        ns, outer = f"{self.bridge}-{index}", f"{self.bridge}v{index}"[:15]
        address = f"{self.subnet}.{index}"
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._veths.append(outer)
        _ip("link", "set", outer, "master", self.bridge, "up")
        _ip("addr", "add", f"{address}/24", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        self.hosts[name] = (ns, address)
        return ns, address

    def block(self, name: str, ports: tuple[int, ...]) -> None:
        """Host ``name`` may not open a TCP connection to these ports anywhere (REJECT in its own OUTPUT chain)."""
        ns = self.hosts[name][0]
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-p", "tcp", "-m", "multiport",
                        "--dports", ",".join(map(str, ports)), "-j", "REJECT", "--reject-with", "tcp-reset"],
                       check=True, capture_output=True, timeout=30)

    def run(self, name: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.hosts[name][0], *args], capture_output=True, text=True,
                              timeout=timeout)

    def close(self) -> None:
        for ns, _ in self.hosts.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for veth in self._veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
