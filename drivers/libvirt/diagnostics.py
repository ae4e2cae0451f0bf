"""Server diagnostics of a libvirt domain in Nova's standard format (API 2.48), as Nova's libvirt driver builds
them in get_instance_diagnostics: the domain's info(), vcpus(), blockStats() per disk, interfaceStats() per NIC
and memoryStats(). Nova reports no utilisation or rates for libvirt (None)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

# Nova's power_state.STATE_MAP over libvirt's domain states (virDomainState).
_STATE = {0: "pending", 1: "running", 2: "running", 3: "paused", 4: "shutdown", 5: "shutdown", 6: "crashed",
          7: "suspended"}
_NIC_KEYS = ("rx_octets", "rx_packets", "rx_errors", "rx_drop", "tx_octets", "tx_packets", "tx_errors", "tx_drop")


def _stats(call, *args) -> Any:
    """A stats call that the hypervisor may not support for this device (Nova skips those): None then."""
    try:
        return call(*args)
    except libvirt.libvirtError:
        return None


def memory_used_mib(dom, maximum_kib: int, current_kib: int) -> int:
    """What the guest uses: the balloon driver's own report (available - unused) when the guest sends one;
    else the QEMU process's resident memory, at most the guest's memory; else the current balloon size."""
    stats = _stats(dom.memoryStats) or {}
    if "available" in stats and "unused" in stats:
        kib = stats["available"] - stats["unused"]
    elif stats.get("rss"):
        kib = min(stats["rss"], stats.get("actual") or maximum_kib)
    else:
        kib = current_kib
    return max(0, kib) // 1024


def qemu_uptime(name: str, run_dir: str = "/run/libvirt/qemu") -> int:
    """Seconds since the domain's QEMU process started (its pid file and /proc), 0 when that cannot be read
    (a remote libvirtd, or the guest is not running)."""
    try:
        with open(os.path.join(run_dir, f"{name}.pid")) as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as fh:
            host_uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, int(host_uptime - start_ticks / os.sysconf("SC_CLK_TCK")))


def diagnostics(dom, virt_type: str, uptime: int | None = None) -> dict:
    """The standard diagnostics of ``dom`` (a libvirt.virDomain)."""
    state, max_kib, cur_kib, ncpu, _cpu_time = dom.info()
    root = ET.fromstring(dom.XMLDesc(0))
    disks = [d for d in root.iterfind("./devices/disk") if d.get("device", "disk") == "disk"]
    config_drive = any((d.find("source") is not None and (d.find("source").get("file") or "").endswith(
        "disk.config")) for d in disks)

    cpu_details = []
    vcpus = _stats(dom.vcpus)
    for number, _vstate, cpu_time, _pcpu in (vcpus[0] if vcpus else []):
        cpu_details.append({"id": number, "time": cpu_time, "utilisation": None})

    disk_details = []
    for disk in disks:
        target = disk.find("target")
        stats = _stats(dom.blockStats, target.get("dev")) if target is not None else None
        if stats is None:
            continue
        rd_req, rd_bytes, wr_req, wr_bytes, errs = stats[:5]
        disk_details.append({"read_bytes": rd_bytes, "read_requests": rd_req, "write_bytes": wr_bytes,
                             "write_requests": wr_req, "errors_count": errs})

    nic_details = []
    for nic in root.iterfind("./devices/interface"):
        mac = nic.find("mac")
        target = nic.find("target")
        stats = _stats(dom.interfaceStats, target.get("dev")) if target is not None and target.get("dev") else None
        nic_details.append({"mac_address": mac.get("address") if mac is not None else None,
                            **dict(zip(_NIC_KEYS, stats or (0,) * 8)), "rx_rate": None, "tx_rate": None})

    running = state in (1, 2, 3)
    return {
        "state": _STATE.get(state, "pending"), "driver": "libvirt", "hypervisor": virt_type,
        "hypervisor_os": "linux",
        "uptime": (qemu_uptime(dom.name()) if uptime is None else uptime) if running else 0,
        "config_drive": config_drive, "num_cpus": ncpu, "num_nics": len(nic_details),
        "num_disks": len(disk_details),
        "memory_details": {"maximum": max_kib // 1024,
                           "used": memory_used_mib(dom, max_kib, cur_kib) if running else 0},
        "cpu_details": cpu_details, "nic_details": nic_details, "disk_details": disk_details,
    }


__all__ = ["diagnostics", "qemu_uptime", "memory_used_mib"]
