"""The conductor's quota writes, in the transaction that creates or deletes the counted rows: reservations against
the usage counters, the checks of per-request, per-user and per-group limits, and limit changes (os-quota-sets,
os-quota-class-sets).

Limits and the over-quota arithmetic are read in core/quota.py. Usage counters change only by conditional UPDATEs
inside the caller's transaction. Entry points for other features: ``check_and_reserve(s, project_id,
{"server_groups": 1}, msg)`` / ``release(...)``, ``check_group_members``, ``check_metadata_items``.
"""
from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import quota
from core.errors import ConductorError
from core.models import (Instance, InstanceGroupMember, KeyPair, QuotaClass, QuotaLimit, QuotaUsage, QuotaUserLimit,
                         QuotaUserUsage)


def _ensure_usage_row(s: Session, project_id: str, user_id: str | None = None) -> None:
    model, conds = _where(project_id, user_id)
    if s.execute(select(model.project_id).where(*conds)).first() is None:
        try:
            with s.begin_nested():
                s.execute(insert(model).values(project_id=project_id, **({"user_id": user_id} if user_id else {}),
                                               instances=0, cores=0, ram=0, server_groups=0))
        except IntegrityError:
            pass  # another transaction created it


def _where(project_id: str, user_id: str | None) -> tuple[type, list]:
    if user_id:
        return QuotaUserUsage, [QuotaUserUsage.project_id == project_id, QuotaUserUsage.user_id == user_id]
    return QuotaUsage, [QuotaUsage.project_id == project_id]


def _locked_usage(s: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """The project's (or one of its users') counters, read with a row lock (PostgreSQL/MariaDB) so the check and
    the UPDATE agree. Callers lock the project's row before a user's, so two creates cannot deadlock."""
    model, conds = _where(project_id, user_id)
    query = select(*[getattr(model, r) for r in quota.COUNTERS]).where(*conds).with_for_update()
    row = s.execute(query).first()
    if row is None:  # the first counted resource of this project (or user)
        _ensure_usage_row(s, project_id, user_id)
        row = s.execute(query).one()
    return {**dict.fromkeys(quota.RESOURCES, 0), **dict(zip(quota.COUNTERS, row))}


def _add_usage(s: Session, project_id: str, deltas: dict[str, int], limits: dict[str, int] | None,
               user_id: str | None = None) -> bool:
    """One conditional UPDATE: add ``deltas`` only if every (limited) counter stays within its limit."""
    checked = tuple(r for r, d in deltas.items() if limits is not None and d > 0 and limits[r] >= 0)
    params = {"q_project_id": project_id, **({"q_user_id": user_id} if user_id else {}),
              **{f"d_{r}": d for r, d in deltas.items()}, **{f"limit_{r}": limits[r] for r in checked}}
    # A Core UPDATE: no usage row is kept in the session (they are read with Core queries), so nothing to sync.
    return s.execute(_usage_update(bool(user_id), tuple(deltas), checked), params).rowcount == 1


@functools.lru_cache(maxsize=64)
def _usage_update(of_user: bool, changed: tuple[str, ...], checked: tuple[str, ...]) -> Any:
    """The counters' conditional UPDATE for one shape of request, built once (building it per call, with its
    cache key, was 7 % of the conductor's CPU in a boot storm)."""
    table = (QuotaUserUsage if of_user else QuotaUsage).__table__
    conds = [table.c.project_id == bindparam("q_project_id", type_=String)]
    if of_user:
        conds.append(table.c.user_id == bindparam("q_user_id", type_=String))
    delta = {r: bindparam(f"d_{r}", type_=Integer) for r in changed}
    conds += [table.c[r] + delta[r] <= bindparam(f"limit_{r}", type_=Integer) for r in checked]
    return update(table).where(and_(*conds)).values({table.c[r]: table.c[r] + delta[r] for r in changed})


def _add_both(s: Session, project_id: str, user_id: str | None, deltas: dict[str, int], limits: dict[str, int],
              ulimits: dict[str, int] | None) -> bool:
    """Add ``deltas`` to the project's and the user's counters if both stay within their limits (else neither)."""
    if not _add_usage(s, project_id, deltas, limits):
        return False
    if user_id is None or _add_usage(s, project_id, deltas, ulimits, user_id):
        return True
    _add_usage(s, project_id, {r: -d for r, d in deltas.items()}, None)  # undo the project's share
    return False


def _scopes(s: Session, project_id: str, user_id: str | None) -> tuple[quota.Scope, quota.Scope | None]:
    """(limits, locked usage) of the project and, given a user, of the user."""
    limits, ulimits = quota.project_and_user_limits(s, project_id, user_id)
    project = (limits, _locked_usage(s, project_id))
    if not user_id:
        return project, None
    return project, (ulimits, _locked_usage(s, project_id, user_id))


def check_and_reserve(s: Session, project_id: str, deltas: dict[str, int], message: str | None = None,
                      user_id: str | None = None) -> None:
    """Count ``deltas`` of counted resources (instances, cores, ram, server_groups) against the project's quota
    and, given ``user_id``, the user's.

    For other helpers' creates, e.g. ``check_and_reserve(s, project_id, {"server_groups": 1},
    "Quota exceeded, too many server groups.", user_id)``, called in the transaction that inserts the row; undo
    with ``release(s, project_id, {"server_groups": 1}, user_id)`` in the transaction that deletes it. Raises a
    403 ConductorError with ``message`` (default: Nova's "Quota exceeded for ...: Requested ..." text)."""
    unknown = set(deltas) - set(quota.COUNTERS)
    if unknown:
        raise ValueError(f"not a counted resource: {sorted(unknown)}")
    for _attempt in range(5):
        project, user = _scopes(s, project_id, user_id)
        overs, (limits, used) = quota.scoped_overs(project, user, deltas)
        if overs:
            raise ConductorError(403, message or quota.over_quota_message(overs, deltas, used, limits))
        if _add_both(s, project_id, user_id, deltas, project[0], user[0] if user else None):
            return
    raise ConductorError(409, "Quota usage changed concurrently; retry the request.")


def release(s: Session, project_id: str, deltas: dict[str, int], user_id: str | None = None) -> None:
    """Give counted resources back (the inverse of check_and_reserve)."""
    negative = {r: -d for r, d in deltas.items()}
    _add_usage(s, project_id, negative, None)
    if user_id and not _add_usage(s, project_id, negative, None, user_id):  # no row yet: create it, then count
        _ensure_usage_row(s, project_id, user_id)
        _add_usage(s, project_id, negative, None, user_id)


def check_group_members(s: Session, project_id: str, members_now: int, adding: int = 1,
                        user_id: str | None = None) -> None:
    """server_group_members: a group may not grow past the limit (count the group's members under a lock on the
    group row, in the transaction that adds the member)."""
    limit = quota.merged_limit(s, project_id, user_id, "server_group_members")
    if 0 <= limit < members_now + adding:
        raise ConductorError(403, "Quota exceeded, too many servers in group")


def check_metadata_items(s: Session, project_id: str, count: int) -> None:
    """For server metadata writes: ``count`` is the number of items the server would have afterwards."""
    try:
        quota.check_metadata_items(quota.project_limits(s, project_id), count)
    except quota.OverQuota as exc:
        raise ConductorError(403, exc.message) from None


def reserve_instances(s: Session, project_id: str, vcpus: int, memory_mb: int, min_count: int,
                      max_count: int, user_id: str | None = None) -> int:
    """Reserve instances, cores and RAM for a (multi-)create against the project's and the user's quota; returns
    how many instances may be created.

    First as asked (``max_count``): the conditional UPDATEs check every limit, so when they succeed nothing needs
    reading. Only when they refuse (over quota, or no usage row yet) are the counters read under a lock, to
    fall back to fewer instances (Nova's rule) or to say which limit is exceeded."""
    limits, ulimits = quota.project_and_user_limits(s, project_id, user_id)
    asked = {"instances": max_count, "cores": vcpus * max_count, "ram": memory_mb * max_count}
    if _add_both(s, project_id, user_id, asked, limits, ulimits):
        return max_count
    for _attempt in range(5):
        project, user = _scopes(s, project_id, user_id)
        try:
            count = quota.instances_allowed(*project, vcpus, memory_mb, min_count, max_count, user)
        except quota.OverQuota as exc:
            raise ConductorError(403, exc.message) from None
        if _add_both(s, project_id, user_id, {"instances": count, "cores": vcpus * count, "ram": memory_mb * count},
                     project[0], user[0] if user else None):
            return count
    raise ConductorError(409, "Quota usage changed concurrently; retry the request.")


def reserve_quota(s: Session, project_id: str, want: dict[str, int], user_id: str | None = None) -> None:
    """Add instances/cores/ram deltas (e.g. a resize's extra cores) if they fit; 403 with Nova's text if not."""
    check_and_reserve(s, project_id, {r: int(d) for r, d in want.items() if d}, user_id=user_id)


def release_quota(s: Session, project_id: str, vcpus: int, memory_mb: int, user_id: str | None = None) -> None:
    release(s, project_id, {"instances": 1, "cores": vcpus, "ram": memory_mb}, user_id)


def reserve_resize(s: Session, inst: Instance, old: dict, new: dict, sign: int = 1) -> None:
    """A resize's change of cores and RAM between two flavor snapshots, counted for the instance's project and user
    (as Nova's upsize check); ``sign=-1`` gives it back (revert, failure)."""
    cores, ram = sign * (new["vcpus"] - old["vcpus"]), sign * (new["ram"] - old["ram"])
    if cores or ram:
        reserve_quota(s, inst.project_id, {"instances": 0, "cores": cores, "ram": ram}, inst.user_id)


def set_project_quotas(s: Session, project_id: str, values: dict[str, int], force: bool,
                       user_id: str | None = None) -> None:
    """os-quota-sets update, of the project or (``user_id``) of one of its users: unless forced, refuse (400)
    a limit outside Nova's settable range (below usage or the users' limits; a user's above what the project has
    left), then upsert every value. Per-project resources (network ones) are the project's even with a user."""
    _locked_usage(s, project_id)  # serializes limit changes with the creates that count against them
    if not force:
        bounds = quota.settable(s, project_id, user_id)
        for resource, limit in values.items():
            problem = quota.check_settable(resource, limit, *bounds[resource])
            if problem:
                raise ConductorError(400, problem)
    per_user = {r: v for r, v in values.items() if user_id and r not in quota.PER_PROJECT}
    per_project = {r: v for r, v in values.items() if r not in per_user}
    if per_project:
        _upsert(s, QuotaLimit, [QuotaLimit.project_id == project_id], {"project_id": project_id}, per_project)
    if per_user:
        _upsert(s, QuotaUserLimit, [QuotaUserLimit.project_id == project_id, QuotaUserLimit.user_id == user_id],
                {"project_id": project_id, "user_id": user_id}, per_user)


def delete_project_quotas(s: Session, project_id: str, user_id: str | None = None) -> None:
    """A user's limits, or the project's together with all its users' (as Nova's destroy_all_by_project)."""
    users = delete(QuotaUserLimit).where(QuotaUserLimit.project_id == project_id)
    if user_id:
        s.execute(users.where(QuotaUserLimit.user_id == user_id))
        return
    s.execute(users)
    s.execute(delete(QuotaLimit).where(QuotaLimit.project_id == project_id))


def set_class_quotas(s: Session, class_name: str, values: dict[str, int]) -> None:
    _upsert(s, QuotaClass, [QuotaClass.class_name == class_name], {"class_name": class_name}, values)


def _upsert(s: Session, model: type, where: list, key: dict[str, str], values: dict[str, int]) -> None:
    existing = {row.resource: row for row in s.scalars(select(model).where(*where).with_for_update())}
    for resource, limit in values.items():
        if resource in existing:
            existing[resource].hard_limit = limit
        else:
            s.add(model(**key, resource=resource, hard_limit=limit))
    s.flush()


def check_server_group_quota(s: Session, project_id: str, user_id: str, *, groups: int = 0,
                             group_id: int | None = None, members: int = 0) -> None:
    """Nova's server_groups (counted per project and per user) and server_group_members (per group and user)
    quotas. Callers hold the group row lock when adding members, so the member count is exact under concurrency."""
    if groups:
        check_and_reserve(s, project_id, {"server_groups": groups}, "Quota exceeded, too many server groups.",
                          user_id)
    if members:
        used = s.scalar(select(func.count()).select_from(InstanceGroupMember).where(
            InstanceGroupMember.group_id == group_id, InstanceGroupMember.user_id == user_id))
        check_group_members(s, project_id, used, members, user_id)


def check_key_pairs(s: Session, project_id: str, user_id: str) -> None:
    """key_pairs is counted per user, against the smaller of the project's and the user's limit (a key pair with
    no project: the project-less limits). The project's usage row lock serializes concurrent creates, so the
    count stays exact until the caller's INSERT."""
    if project_id:
        _locked_usage(s, project_id)
    limit = quota.merged_limit(s, project_id, user_id if project_id else None, "key_pairs")
    used = s.scalar(select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id))
    if limit >= 0 and used + 1 > limit:
        raise ConductorError(403, "Quota exceeded, too many key pairs.")
