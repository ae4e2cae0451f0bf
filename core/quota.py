"""Nova's quotas: resources, defaults, effective limits, usage, and the over-quota arithmetic and messages.

Reads only; the conductor writes limits and usage (core/writes/quotas.py). Limits resolve as in Nova's DB driver:
a project's own limit, else the ``default`` quota class, else the configured default. -1 means unlimited.

Per-user quotas (``os-quota-sets?user_id=``, Nova's project_user_quotas): a user's limit is their own, else the
project's. Every resource but the per-project network ones may be set per user; a user's limit may not exceed
what the project has not yet given to its other users (``settable``).

Counted resources keep usage counters per project (``quota_usages``) and per user (``quota_user_usages``),
changed by conditional UPDATEs in the same conductor transaction as the create, so limits hold under
concurrency; a create must fit both the project's and the user's quota. ``metadata_items`` and
``injected_file*`` limit one request. ``key_pairs`` are counted per user, ``server_group_members`` per server
group and user (against the smaller of the project's and the user's limit, as Nova does).
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from sqlalchemy import bindparam, func, literal, select, union_all
from sqlalchemy.orm import Session

from core.models import KeyPair, QuotaClass, QuotaLimit, QuotaUsage, QuotaUserLimit, QuotaUserUsage
from core.settings import get_settings

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
# Resources with a usage counter column in quota_usages (and quota_user_usages).
COUNTERS = ("instances", "cores", "ram", "server_groups")
# Nova's PER_PROJECT_QUOTAS: never per user; a ``?user_id=`` update of one sets the project's limit.
PER_PROJECT = ("fixed_ips", "floating_ips", "networks")


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
    return project_and_user_limits(s, project_id)[0]


def _limits_query(with_user: bool):
    """The ``default`` class's limits, the project's own and (``with_user``) the user's, ranked 0, 1, 2."""
    parts = [select(QuotaClass.resource, QuotaClass.hard_limit, literal(0).label("rank"))
             .where(QuotaClass.class_name == DEFAULT_CLASS),
             select(QuotaLimit.resource, QuotaLimit.hard_limit, literal(1).label("rank"))
             .where(QuotaLimit.project_id == bindparam("project_id"))]
    if with_user:
        parts.append(select(QuotaUserLimit.resource, QuotaUserLimit.hard_limit, literal(2).label("rank"))
                     .where(QuotaUserLimit.project_id == bindparam("project_id"),
                            QuotaUserLimit.user_id == bindparam("user_id")))
    return union_all(*parts)


_LIMITS = {False: _limits_query(False), True: _limits_query(True)}  # built once: every boot reads them


def project_and_user_limits(s: Session, project_id: str,
                            user_id: str | None = None) -> tuple[dict[str, int], dict[str, int] | None]:
    """The project's limits and, given ``user_id``, the user's (Nova's get_user_quotas), in one query: the
    ``default`` class's rows, the project's own and the user's, the later overriding the earlier."""
    params = {"project_id": project_id, **({"user_id": user_id} if user_id else {})}
    rows = sorted(s.execute(_LIMITS[bool(user_id)], params).all(), key=lambda r: r[2])
    project = configured_defaults()
    for resource, limit, rank in rows:
        if rank < 2 and resource in project:
            project[resource] = limit
    if not user_id:
        return project, None
    user = dict(project)
    user.update({resource: limit for resource, limit, rank in rows if rank == 2 and resource in user})
    return project, user


def user_rows(s: Session, project_id: str, user_id: str) -> dict[str, int]:
    """The limits a user has set within a project (no fallback)."""
    return {row.resource: row.hard_limit for row in s.scalars(select(QuotaUserLimit).where(
        QuotaUserLimit.project_id == project_id, QuotaUserLimit.user_id == user_id))}


def user_limits(s: Session, project_id: str, user_id: str) -> dict[str, int]:
    """Nova's get_user_quotas: the user's own limit, else the project's (own, class, configured)."""
    return project_and_user_limits(s, project_id, user_id)[1]


def merged_limit(s: Session, project_id: str, user_id: str | None, resource: str) -> int:
    """Nova's check of a user-counted resource: the smaller of the project's and the user's limit (plain min)."""
    limit = project_limits(s, project_id)[resource]
    return min(limit, user_limits(s, project_id, user_id)[resource]) if user_id else limit


def usage(s: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """In-use counts of the project, or of one of its users; resources that limit one request (or one group) are
    0, as in Nova's detail view."""
    used = dict.fromkeys(RESOURCES, 0)
    row = s.get(QuotaUserUsage, (project_id, user_id)) if user_id else s.get(QuotaUsage, project_id)
    if row is not None:
        for res in COUNTERS:
            used[res] = getattr(row, res) or 0
    if user_id:
        used["key_pairs"] = s.scalar(select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id))
    return used


def _unlimited(v: int) -> bool:
    return v <= -1


def settable(s: Session, project_id: str, user_id: str | None = None) -> dict[str, tuple[int, int]]:
    """Nova's get_settable_quotas: (minimum, maximum) a new limit must lie in; -1 is no bound.

    Project: at least its usage and the sum of its users' limits. User: at least the user's usage, at most
    what the project has left after its users' limits (``remains``) plus the user's own current limit. The
    arithmetic is Nova's, including its plain subtraction of every user limit (an unlimited one adds 1)."""
    limits = project_limits(s, project_id)
    remains = dict(limits)
    for row in s.scalars(select(QuotaUserLimit).where(QuotaUserLimit.project_id == project_id)):
        if row.resource in remains:
            remains[row.resource] -= row.hard_limit
    out: dict[str, tuple[int, int]] = {}
    if user_id:
        own, used = user_rows(s, project_id, user_id), usage(s, project_id, user_id)
        used["key_pairs"] = 0  # Nova leaves per-user key pairs out of its limit checks
        for r in RESOURCES:
            mine = own.get(r, 0)
            maximum = -1 if _unlimited(remains[r]) or _unlimited(mine) else remains[r] + mine
            out[r] = (used[r], maximum)
        return out
    used = usage(s, project_id)
    for r in RESOURCES:
        given = -1 if _unlimited(limits[r]) or _unlimited(remains[r]) else limits[r] - remains[r]
        out[r] = (max(given, used[r]), -1)
    return out


def check_settable(resource: str, limit: int, minimum: int, maximum: int) -> str | None:
    """Nova's _validate_quota_limit: the 400 message, or None when ``limit`` is acceptable (-1 is infinite)."""
    def inf(v: int) -> float:
        return float("inf") if v == -1 else v
    if inf(limit) < inf(minimum):
        return (f"Quota limit {limit} for {resource} must be greater than or equal to already used and reserved "
                f"{minimum}.")
    if inf(limit) > inf(maximum):
        return f"Quota limit {limit} for {resource} must be less than or equal to {maximum}."
    return None


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
    """Resources a (positive) delta would take over their limit, sorted as in Nova's messages."""
    return sorted(r for r, d in deltas.items() if d > 0 and limits[r] >= 0 and used[r] + d > limits[r])


Scope = tuple[dict[str, int], dict[str, int]]  # (limits, used) of the project or of a user


def scoped_overs(project: Scope, user: Scope | None, deltas: dict[str, int]) -> tuple[list[str], Scope]:
    """Nova's limit_check_project_and_user: each resource is checked against the project, else the user; if any
    is over the user's quota, the user's limits and usage are the ones reported (for every over resource)."""
    p_over = overs_of(*project, deltas)
    u_over = [r for r in overs_of(*user, deltas) if r not in p_over] if user is not None else []
    return sorted(p_over + u_over), (user if u_over and user is not None else project)


def instances_allowed(limits: dict[str, int], used: dict[str, int], vcpus: int, ram: int, min_count: int,
                      max_count: int, user: Scope | None = None) -> int:
    """How many instances (between min_count and max_count) a create may start, or OverQuota.

    Nova's rule (check_num_instances_quota): when max_count does not fit the project's or the ``user``'s quota,
    retry with as many as the headroom of instances, cores and RAM of the quota that failed allows, if that is at
    least min_count; otherwise fail, naming every resource over that quota."""
    count = max_count
    while True:
        deltas = {"instances": count, "cores": count * vcpus, "ram": count * ram}
        overs, (lim, use) = scoped_overs((limits, used), user, deltas)
        if not overs:
            return count
        headroom = {r: (lim[r] - use[r]) if lim[r] >= 0 else None for r in deltas}
        allowed = headroom["instances"] if headroom["instances"] is not None else count
        if vcpus and headroom["cores"] is not None:
            allowed = min(allowed, headroom["cores"] // vcpus)
        if ram and headroom["ram"] is not None:
            allowed = min(allowed, headroom["ram"] // ram)
        if 0 < allowed < count and min_count <= allowed:
            count = allowed
            continue
        requested: dict[str, object] = {**deltas, "instances": str(min_count) if min_count == count
                                        else f"{min_count}-{count}"}
        raise OverQuota(over_quota_message(overs, requested, use, lim))


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
