"""Nova's quotas: resources, defaults, effective limits, usage, and the over-quota arithmetic and messages.

Reads only; the conductor writes limits and usage (tasks/db_write.py). Limits resolve as in Nova's DB driver:
a project's own limit, else the ``default`` quota class, else the configured default. -1 means unlimited.

Counted resources keep a usage counter (``quota_usages``) changed by conditional UPDATEs in the same conductor
transaction as the create, so limits hold under concurrency. ``metadata_items`` and ``injected_file*`` limit
one request. ``key_pairs`` are counted per user, ``server_group_members`` per server group.
Per-user quotas (``?user_id=``) are not kept separately: the project's quotas apply to each of its users.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import KeyPair, QuotaClass, QuotaLimit, QuotaUsage
from app.settings import get_settings

DEFAULT_CLASS = "default"
MAX_INT = 2147483647

# Every resource of Nova's quota engine, in its order. The network ones are deprecated (nova-network is gone);
# they are kept, unlimited, for responses before microversion 2.36.
RESOURCES = ("instances", "cores", "ram", "metadata_items", "injected_files", "injected_file_content_bytes",
             "injected_file_path_bytes", "key_pairs", "server_groups", "server_group_members", "fixed_ips",
             "floating_ips", "security_groups", "security_group_rules")
NETWORK_RESOURCES = ("fixed_ips", "floating_ips", "networks", "security_group_rules", "security_groups")
INJECTED_FILE_RESOURCES = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
SERVER_GROUP_RESOURCES = ("server_groups", "server_group_members")
# Resources with a usage counter column in quota_usages.
COUNTERS = ("instances", "cores", "ram", "server_groups")


class OverQuota(Exception):
    """403 with Nova's message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def configured_defaults() -> dict[str, int]:
    cfg = get_settings()
    return {"instances": cfg.quota_instances, "cores": cfg.quota_cores, "ram": cfg.quota_ram,
            "metadata_items": cfg.quota_metadata_items, "injected_files": cfg.quota_injected_files,
            "injected_file_content_bytes": cfg.quota_injected_file_content_bytes,
            "injected_file_path_bytes": cfg.quota_injected_file_path_length, "key_pairs": cfg.quota_key_pairs,
            "server_groups": cfg.quota_server_groups, "server_group_members": cfg.quota_server_group_members,
            "fixed_ips": -1, "floating_ips": -1, "security_groups": -1, "security_group_rules": -1}


def class_limits(s: Session, class_name: str = DEFAULT_CLASS) -> dict[str, int]:
    """A quota class's limits; what it does not set comes from the ``default`` class, then the configuration."""
    limits = configured_defaults()
    names = [DEFAULT_CLASS] if class_name == DEFAULT_CLASS else [DEFAULT_CLASS, class_name]
    rows = s.scalars(select(QuotaClass).where(QuotaClass.class_name.in_(names)))
    for row in sorted(rows, key=lambda r: r.class_name != DEFAULT_CLASS):  # the named class wins
        if row.resource in limits:
            limits[row.resource] = row.hard_limit
    return limits


def project_limits(s: Session, project_id: str) -> dict[str, int]:
    limits = class_limits(s)
    for row in s.scalars(select(QuotaLimit).where(QuotaLimit.project_id == project_id)):
        if row.resource in limits:
            limits[row.resource] = row.hard_limit
    return limits


def usage(s: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """In-use counts; resources that limit one request (or one group) are 0, as in Nova's detail view."""
    used = dict.fromkeys(RESOURCES, 0)
    row = s.get(QuotaUsage, project_id)
    if row is not None:
        for res in COUNTERS:
            used[res] = getattr(row, res) or 0
    if user_id:
        used["key_pairs"] = s.scalar(select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id))
    return used


def filtered_for_quota_sets(version) -> tuple[str, ...]:
    """Keys os-quota-sets and /limits leave out at a microversion (2.36: network, 2.57: injected files)."""
    if version.matches("2.57"):
        return NETWORK_RESOURCES + INJECTED_FILE_RESOURCES
    if version.matches("2.36"):
        return NETWORK_RESOURCES
    return ()


def filtered_for_quota_classes(version) -> tuple[str, ...]:
    """os-quota-class-sets: server groups only from 2.50, which also drops the network keys; 2.57 as above."""
    if version.matches("2.57"):
        return NETWORK_RESOURCES + INJECTED_FILE_RESOURCES
    if version.matches("2.50"):
        return NETWORK_RESOURCES
    return SERVER_GROUP_RESOURCES


def visible(filtered: Iterable[str]) -> list[str]:
    skip = set(filtered)
    return [r for r in RESOURCES if r not in skip]


# --- arithmetic ----------------------------------------------------------------------------------------------------

def over_quota_message(overs: list[str], requested: dict[str, object], used: dict[str, int],
                       limits: dict[str, int]) -> str:
    """Nova's TooManyInstances text: "Quota exceeded for cores, ram: Requested 4, 2048, but already used ..."."""
    def join(values: Iterable[object]) -> str:
        return ", ".join(str(v) for v in values)
    return (f"Quota exceeded for {join(overs)}: Requested {join(requested[r] for r in overs)}, but already used "
            f"{join(used[r] for r in overs)} of {join(limits[r] for r in overs)} {join(overs)}")


def overs_of(limits: dict[str, int], used: dict[str, int], deltas: dict[str, int]) -> list[str]:
    return [r for r, d in deltas.items() if limits[r] >= 0 and used[r] + d > limits[r]]


def instances_allowed(limits: dict[str, int], used: dict[str, int], vcpus: int, ram: int, min_count: int,
                      max_count: int) -> int:
    """How many instances (between min_count and max_count) a create may start, or OverQuota.

    Nova's rule: when max_count does not fit, start as many as the headroom of instances, cores and RAM allows if
    that is at least min_count; otherwise fail, naming every resource that max_count would exceed."""
    deltas = {"instances": max_count, "cores": max_count * vcpus, "ram": max_count * ram}
    overs = overs_of(limits, used, deltas)
    if not overs:
        return max_count
    headroom = {r: (limits[r] - used[r]) if limits[r] >= 0 else None for r in deltas}
    allowed = headroom["instances"] if headroom["instances"] is not None else max_count
    if vcpus and headroom["cores"] is not None:
        allowed = min(allowed, headroom["cores"] // vcpus)
    if ram and headroom["ram"] is not None:
        allowed = min(allowed, headroom["ram"] // ram)
    if 0 < allowed and min_count <= allowed <= max_count:
        return allowed
    requested: dict[str, object] = {**deltas, "instances": str(min_count) if min_count == max_count
                                    else f"{min_count}-{max_count}"}
    raise OverQuota(over_quota_message(overs, requested, used, limits))


def check_metadata_items(limits: dict[str, int], count: int) -> None:
    allowed = limits["metadata_items"]
    if 0 <= allowed < count:
        raise OverQuota(f"Maximum number of metadata items exceeds {allowed}")


def check_injected_files(limits: dict[str, int], files: list[dict]) -> None:
    """Personality files of a server create (before 2.57): count, path length and decoded content size."""
    if 0 <= limits["injected_files"] < len(files):
        raise OverQuota("Personality file limit exceeded")
    max_path = max_content = 0
    for item in files:
        path, content = str(item.get("path", "")), item.get("contents", "")
        try:
            decoded = base64.b64decode(content or b"", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValueError(f"Personality content for {path} cannot be decoded") from None
        max_path, max_content = max(max_path, len(path)), max(max_content, len(decoded))
    if 0 <= limits["injected_file_path_bytes"] < max_path:
        raise OverQuota(f"Personality file path exceeds maximum {limits['injected_file_path_bytes']}")
    if 0 <= limits["injected_file_content_bytes"] < max_content:
        raise OverQuota(f"Personality file content exceeds maximum {limits['injected_file_content_bytes']}")


def check_new_limit(resource: str, limit: int, in_use: int) -> str | None:
    """Nova's refusal of a limit below current usage (None when the limit is acceptable)."""
    if limit != -1 and limit < in_use:
        return (f"Quota limit {limit} for {resource} must be greater than or equal to already used and reserved "
                f"{in_use}.")
    return None
