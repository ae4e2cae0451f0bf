"""Flavor extra-spec validation from API 2.86, after Nova's nova/api/validation/extra_specs validators.

A key with a validator must have a value of its type (integer with bounds, boolean-like, one of an enum, or
matching a pattern); a key in a namespace Nova knows (``hw:``, ``quota:``, ``resources1:`` ...) but with no
validator is refused as not a valid extra spec; keys in other namespaces, and keys without one, are free.
Messages are Nova's. Coverage: see docs/microversions.md (2.86).
"""
from __future__ import annotations

import dataclasses
import re

_CPUSET = r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"
_GROUP = r"([a-zA-Z0-9_-]{1,64})?"
_SHARES = ("custom", "high", "normal", "low")
# os-resource-classes' standard classes (resources{group}:<class>; CUSTOM_* classes are always allowed).
_RESOURCE_CLASSES = (
    "VCPU", "MEMORY_MB", "DISK_GB", "PCI_DEVICE", "SRIOV_NET_VF", "NUMA_SOCKET", "NUMA_CORE", "NUMA_THREAD",
    "NUMA_MEMORY_MB", "IPV4_ADDRESS", "VGPU", "VGPU_DISPLAY_HEAD", "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC", "PCPU", "MEM_ENCRYPTION_CONTEXT", "FPGA", "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC", "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC")
_CAPABILITIES = (
    "id", "uuid", "service_id", "host", "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
    "local_gb_used", "hypervisor_type", "hypervisor_version", "hypervisor_hostname", "free_ram_mb", "free_disk_gb",
    "current_workload", "running_vms", "disk_available_least", "host_ip", "mapped", "cpu_allocation_ratio",
    "ram_allocation_ratio", "disk_allocation_ratio", "total_usable_ram_mb", "total_usable_disk_gb",
    "disk_mb_used", "free_disk_mb", "vcpus_total", "num_instances", "num_io_ops", "failed_builds", "aggregates",
    "cell_uuid", "updated")
_CAPABILITY_TREES = ("cpu_info", "metrics", "stats", "numa_topology", "supported_hv_specs", "pci_device_pools",
                     "nodename", "pci_stats", "supported_instances", "limits", "instances")


class ExtraSpecError(ValueError):
    """A refused extra spec; the message is Nova's."""


@dataclasses.dataclass(frozen=True)
class Rule:
    name_regex: str
    kind: str  # "int" | "bool" | "str"
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    min: int | None = None
    max: int | None = None


def _int(name: str, lo: int | None = None, hi: int | None = None) -> Rule:
    return Rule(re.escape(name), "int", min=lo, max=hi)


def _bool(name: str) -> Rule:
    return Rule(re.escape(name), "bool")


def _enum(name: str, *values: str) -> Rule:
    return Rule(re.escape(name), "str", enum=values)


def _str(name: str, pattern: str | None = None) -> Rule:
    return Rule(re.escape(name), "str", pattern=pattern)


RULES: list[Rule] = [
    # hw: (nova/api/validation/extra_specs/hw.py)
    _bool("hw:cpu_realtime"), _str("hw:cpu_realtime_mask", r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    _bool("hw:hide_hypervisor_id"), _enum("hw:cpu_policy", "dedicated", "shared", "mixed"),
    _enum("hw:cpu_thread_policy", "prefer", "isolate", "require"),
    _enum("hw:emulator_threads_policy", "isolate", "share"), _str("hw:cpu_dedicated_mask", _CPUSET),
    _str("hw:mem_page_size", r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)"), _bool("hw:locked_memory"),
    _int("hw:numa_nodes", 1), Rule(r"hw:numa_cpus\.(?P<num>\d+)", "str", pattern=_CPUSET),
    Rule(r"hw:numa_mem\.(?P<num>\d+)", "int", min=1),
    _enum("hw:pci_numa_affinity_policy", "required", "preferred", "legacy", "socket"),
    *(_int(f"hw:cpu_{what}", 1) for what in ("sockets", "cores", "threads", "max_sockets", "max_cores",
                                              "max_threads")),
    _bool("hw:boot_menu"), _bool("hw:vif_multiqueue_enabled"), _bool("hw:mem_encryption"),
    _enum("hw:mem_encryption_model", "amd-sev", "amd-sev-es", "amd-sev-snp"),
    _str("hw:pmem", r"([a-zA-Z0-9_]+(,)?)+"), _bool("hw:pmu"), _int("hw:serial_port_count", 0),
    _enum("hw:tpm_model", "tpm-tis", "tpm-crb"), _enum("hw:tpm_version", "1.2", "2.0"),
    _enum("hw:tpm_secret_security", "user", "host", "deployment"),
    _enum("hw:watchdog_action", "none", "pause", "poweroff", "reset", "disabled"),
    _enum("hw:viommu_model", "intel", "smmuv3", "virtio", "auto"), _bool("hw:virtio_packed_ring"),
    _enum("hw:sound_model", "sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio"),
    _enum("hw:usb_model", "none", "nec-xhci", "qemu-xhci"), _int("hw:redirected_usb_ports", 0, 15),
    _bool("hw:ephemeral_encryption"), _enum("hw:ephemeral_encryption_format", "plain", "luks", "luksv2"),
    # hw_rng:, hw_video:, os:
    _bool("hw_rng:allowed"), _int("hw_rng:rate_bytes", 0), _int("hw_rng:rate_period", 0),
    _int("hw_video:ram_max_mb", 0), _enum("os:secure_boot", "disabled", "required"),
    # quota: (libvirt tunables and VMware shares/limits/reservations)
    *(rule for res in ("cpu", "memory", "disk_io", "vif") for rule in (
        _int(f"quota:{res}_limit", 0), _int(f"quota:{res}_reservation"),
        _enum(f"quota:{res}_shares_level", *_SHARES), _int(f"quota:{res}_shares_share", 0))),
    _int("quota:cpu_shares", 0), _int("quota:cpu_period", 0), _int("quota:cpu_quota"),
    *(_int(f"quota:disk_{what}_sec", 0) for what in ("read_bytes", "read_iops", "write_bytes", "write_iops",
                                                      "total_bytes", "total_iops")),
    *(_int(f"quota:vif_{way}_{what}", 0) for way in ("inbound", "outbound") for what in ("average", "peak",
                                                                                         "burst")),
    # keys without a namespace
    _bool("hide_hypervisor_id"), _enum("group_policy", "isolate", "none"),
    # scheduler filters, PCI, placement, Cyborg, VMware
    Rule(r"aggregate_instance_extra_specs:(?P<key>.+)", "str"),
    *(_str(f"capabilities:{name}") for name in _CAPABILITIES),
    *(Rule(rf"capabilities:{tree}(?P<filter>(:\w+)*)", "str") for tree in _CAPABILITY_TREES),
    _str("pci_passthrough:alias", r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*"),
    *(Rule(rf"resources(?P<group>{_GROUP}):{rc}", "int") for rc in _RESOURCE_CLASSES),
    Rule(rf"resources(?P<group>{_GROUP}):CUSTOM_(?P<resource>[A-Z0-9_]+)", "int"),
    # Standard trait names are not enumerated here: any upper-case trait name is taken (Nova: os-traits' list).
    Rule(rf"trait(?P<group>{_GROUP}):(?P<trait>[A-Z0-9_]+)", "str", enum=("required", "forbidden")),
    _str("accel:device_profile"), _str("vmware:hw_version"), _str("vmware:storage_policy"),
]
# Plain names are looked up directly, then the patterns are tried (as Nova does).
_BY_NAME = {r.name_regex: r for r in RULES if re.escape(r.name_regex) == r.name_regex}
# Nova's namespaces: what precedes ':' in each validator's name pattern (itself a pattern for resources/trait).
NAMESPACES = sorted({r.name_regex.split(":", 1)[0] for r in RULES if ":" in r.name_regex})

_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


def _check_value(rule: Rule, value: str) -> None:
    if rule.kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise ExtraSpecError(f"Validation failed; '{value}' is not a valid integer value.") from None
        if rule.max is not None and rule.max < number:
            raise ExtraSpecError(f"Validation failed; '{number}' is greater than the max value of '{rule.max}'.")
        if rule.min is not None and rule.min > number:
            raise ExtraSpecError(f"Validation failed; '{number}' is less than the min value of '{rule.min}'.")
    elif rule.kind == "bool":
        if value.strip().lower() not in _TRUE + _FALSE:
            raise ExtraSpecError(f"Validation failed; '{value}' is not a valid boolean-like value.")
    elif rule.pattern is not None:
        if not re.fullmatch(rule.pattern, value):
            raise ExtraSpecError(f"Validation failed; '{value}' is not of the format '{rule.pattern}'.")
    elif rule.enum and value not in rule.enum:
        raise ExtraSpecError(f"Validation failed; '{value}' is not one of: {', '.join(rule.enum)}.")


def validate(name: str, value: str) -> None:
    """Nova's validators.validate: raise ExtraSpecError for a bad value or an unknown key in a known namespace."""
    rule = _BY_NAME.get(name) or next((r for r in RULES if re.fullmatch(r.name_regex, name)), None)
    if rule is not None:
        _check_value(rule, value)
        return
    if ":" not in name:
        return
    prefix = name.split(":", 1)[0]
    if any(re.fullmatch(namespace, prefix) for namespace in NAMESPACES):
        raise ExtraSpecError(f"Validation failed; extra spec '{name}' does not appear to be a valid extra spec.")
