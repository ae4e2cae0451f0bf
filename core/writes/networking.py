"""The conductor's writes of an instance's networking: the built-in network's row, fixed IPs (allocated with the
create, released with the delete) and the password a guest posts to the metadata service.
"""
from __future__ import annotations

import functools
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import DateTime, String, bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import network
from core.errors import ConductorError
from core.models import FixedIP, Instance, InstancePassword, Network, utcnow


_NETWORKS_SEEN: set[tuple[str, str]] = set()  # (database URL, network id): rows known to exist (never deleted)


def ensure_network(s: Session) -> Network | None:
    """Make sure the built-in network's row exists (created on first use; its id is deterministic, see
    core/network.py). Checked once per process and database; returns the row when it had to be read."""
    info = network.builtin()
    key = (str(s.get_bind().url), info.id)
    if key in _NETWORKS_SEEN:
        return None
    row = s.get(Network, info.id)
    if row is None:
        try:
            with s.begin_nested():
                s.add(Network(id=info.id, name=info.name, cidr=info.cidr, gateway=info.gateway, bridge=info.bridge))
                s.flush()
        except IntegrityError:
            pass  # created by a concurrent transaction
        row = s.get(Network, info.id)
    _NETWORKS_SEEN.add(key)
    return row


# Pools up to this size are kept as a list of address strings (a /16: 65,534 strings, about 4 MB).
_POOL_LIST_MAX = 1 << 16


@functools.lru_cache(maxsize=8)
def _pool_addresses(cidr: str, gateway: str) -> tuple[str, ...] | None:
    net = ipaddress.IPv4Network(cidr)
    if net.num_addresses > _POOL_LIST_MAX:
        return None
    return tuple(a for a in map(str, net.hosts()) if a != gateway)


def lowest_free_address(info: network.NetworkInfo, used: set[str]) -> str | None:
    """The pool's lowest address (numeric order, gateway excluded) not in ``used``; None when all are taken.

    A set lookup per candidate in the pool's cached address list (no address formatted or parsed per call);
    larger pools walk integers and format each candidate once."""
    pool = _pool_addresses(info.cidr, info.gateway)
    if pool is not None:
        return next((a for a in pool if a not in used), None)
    net = ipaddress.IPv4Network(info.cidr)
    gateway = int(ipaddress.IPv4Address(info.gateway))
    for a in range(int(net.network_address) + 1, int(net.broadcast_address)):
        if a == gateway:
            continue
        text = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
        if text not in used:
            return text
    return None


_FIXED = FixedIP.__table__.c
_USED_ADDRESSES = select(_FIXED.address).where(_FIXED.network_id == bindparam("network_id"))
_USED_AMONG = _USED_ADDRESSES.where(_FIXED.address.in_(bindparam("addresses", expanding=True)))
# A pool is searched in windows of this many addresses, each one lookup on the (network, address) unique index.
_WINDOW = 64
# (database URL, network id) -> the pool index below which this process last saw every address taken; a release
# here moves it back. Only a hint: a window's lookup and the unique key decide.
_LOW_WATER: dict[tuple[str, str], int] = {}


def allocate_fixed_ip(s: Session, instance_uuid: str, tag: str | None = None) -> str:
    """Give the instance the lowest free address of the built-in network that this process knows of, and a random
    MAC (and the device tag of its ``networks`` entry, 2.32/2.42); returns the address.

    The pool is looked at window by window from the process's low-water mark (one indexed lookup of 64 addresses
    per window, not a read of every address in use), wrapping around once to find what other processes freed.
    Concurrent allocations are settled by the unique constraints: the loser retries with the next address."""
    info = network.builtin()
    ensure_network(s)
    pool = _pool_addresses(info.cidr, info.gateway)
    if pool is None:  # larger than the cached address list: walk the whole pool against every used address
        return _allocate_from(s, info, instance_uuid, tag, lambda: lowest_free_address(
            info, set(s.execute(_USED_ADDRESSES, {"network_id": info.id}).scalars())))
    key = (str(s.get_bind().url), info.id)
    start = _LOW_WATER.get(key, 0)
    if s.get_bind().dialect.name == "postgresql":
        address = _insert_first_free(s, info, pool[start:start + _WINDOW], instance_uuid, tag)
        if address is not None:
            _LOW_WATER[key] = pool.index(address, start)
            return address
        # The window is full, or a concurrent allocation took the address: look window by window (below).
    wrapped = start == 0

    def next_free() -> str | None:
        nonlocal start, wrapped
        while True:
            if start >= len(pool):
                if wrapped:
                    return None
                start, wrapped = 0, True
            window = pool[start:start + _WINDOW]
            used = set(s.execute(_USED_AMONG, {"network_id": info.id, "addresses": list(window)}).scalars())
            free = next((i for i, a in enumerate(window) if a not in used), None)
            if free is not None:
                start += free
                _LOW_WATER[key] = start
                return window[free]
            start += _WINDOW
    return _allocate_from(s, info, instance_uuid, tag, next_free)


# PostgreSQL: the window's lowest address not in use, inserted in one statement (the lookup and the INSERT were
# two, and the lookup's 64 expanded parameters cost more Python than the rest of the allocation). The window is one
# array parameter, so the statement's text never changes and the server keeps it prepared. created_at is given: a
# column default is not run for INSERT ... SELECT.
_CANDIDATES = func.unnest(bindparam("addresses", type_=postgresql.ARRAY(String))).table_valued(
    "address", with_ordinality="position").render_derived(name="candidate")
_FIRST_FREE = postgresql.insert(FixedIP.__table__).from_select(
    ["network_id", "address", "mac", "port_id", "instance_uuid", "tag", "created_at"],
    select(bindparam("network_id", type_=String), _CANDIDATES.c.address, bindparam("mac", type_=String),
           bindparam("port_id", type_=String), bindparam("instance_uuid", type_=String),
           bindparam("tag", type_=String), bindparam("created_at", type_=DateTime))
    .where(~select(_FIXED.id).where(_FIXED.network_id == bindparam("network_id", type_=String),
                                    _FIXED.address == _CANDIDATES.c.address).exists())
    .order_by(_CANDIDATES.c.position).limit(1)).on_conflict_do_nothing().returning(_FIXED.address)


def _insert_first_free(s: Session, info: network.NetworkInfo, window: tuple[str, ...], instance_uuid: str,
                       tag: str | None) -> str | None:
    """Insert the lowest address of ``window`` that is not in use (PostgreSQL); None when there is none, or when
    a concurrent allocation holds it (ON CONFLICT DO NOTHING: the caller then looks again)."""
    if not window:
        return None
    return s.execute(_FIRST_FREE, {"network_id": info.id, "addresses": list(window), "mac": network.random_mac(),
                                   "port_id": str(uuid.uuid4()), "instance_uuid": instance_uuid, "tag": tag,
                                   "created_at": utcnow()}).scalar()


def _allocate_from(s: Session, info: network.NetworkInfo, instance_uuid: str, tag: str | None,
                   next_free: Callable[[], str | None]) -> str:
    """Insert the address ``next_free`` names (None: the pool is full, 409) unless another allocation took it."""
    for _attempt in range(16):
        address = next_free()
        if address is None:
            raise ConductorError(409, f"No fixed IP addresses available on network {info.name} ({info.cidr}).")
        if _insert_unless_taken(s, FixedIP.__table__, {"network_id": info.id, "address": address,
                                                       "mac": network.random_mac(), "port_id": str(uuid.uuid4()),
                                                       "instance_uuid": instance_uuid,
                                                       "tag": tag}):
            return address
    raise ConductorError(503, f"Could not allocate a fixed IP on network {info.name}: too much contention.")


def _insert_unless_taken(s: Session, table: Any, values: dict) -> bool:
    """INSERT the row unless a unique key of it is taken (then nothing, and False): the dialect's own
    do-nothing-on-conflict, so no SAVEPOINT is needed to survive the conflict (two round trips fewer)."""
    stmt = _insert_or_nothing(s.get_bind().dialect.name, table)
    if stmt is not None:
        result = s.execute(stmt, values)
        return result.first() is not None if result.returns_rows else result.rowcount == 1
    try:
        with s.begin_nested():
            s.execute(insert(table), values)
        return True
    except IntegrityError:
        return False


@functools.lru_cache(maxsize=16)
def _insert_or_nothing(dialect: str, table: Any) -> Any:
    """The dialect's INSERT that does nothing when a unique key is taken (built once; values are bound per
    execution), or None for a dialect without one."""
    if dialect in ("postgresql", "sqlite"):
        # The row it inserted comes back (none after a conflict): the rowcount of an INSERT whose RETURNING
        # SQLAlchemy adds by itself is -1 on psycopg 3.
        insert_ = (postgresql if dialect == "postgresql" else sqlite).insert
        return insert_(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    if dialect in ("mysql", "mariadb"):
        return insert(table).prefix_with("IGNORE")  # every value here is generated and valid
    return None


def release_fixed_ips(s: Session, instance_uuid: str) -> None:
    """Free the instance's addresses; allocations in this process look from the lowest freed one again."""
    freed = s.execute(delete(FixedIP.__table__).where(_FIXED.instance_uuid == instance_uuid)
                      .returning(_FIXED.network_id, _FIXED.address)).all()
    url = str(s.get_bind().url)
    for network_id, address in freed:
        key = (url, network_id)
        if key in _LOW_WATER and network_id == (info := network.builtin()).id:  # a mark implies a cached pool
            _LOW_WATER[key] = min(_LOW_WATER[key], _pool_index(info, address))


def _pool_index(info: network.NetworkInfo, address: str) -> int:
    """The index of ``address`` in the pool's cached list (hosts in numeric order, the gateway left out)."""
    net = ipaddress.IPv4Network(info.cidr)
    value = int(ipaddress.IPv4Address(address))
    return value - int(net.network_address) - 1 - (value > int(ipaddress.IPv4Address(info.gateway)))


def delete_password(s: Session, instance_uuid: str) -> None:
    """Forget the password the instance's guest posted to the metadata service."""
    s.execute(delete(InstancePassword).where(InstancePassword.instance_uuid == instance_uuid))


def clear_metadata_password(s: Session, instance_uuid: str) -> None:
    """os-server-password DELETE: forget the guest's password (the guest may post a new one, as in Nova)."""
    s.execute(delete(InstancePassword).where(InstancePassword.instance_uuid == instance_uuid))


def set_metadata_password(s: Session, instance_uuid: str, password: str) -> None:
    """Store the guest's password once (Nova: a second POST is a 409)."""
    if s.scalar(select(Instance.deleted).where(Instance.uuid == instance_uuid)) != 0:  # None: no such instance
        raise ConductorError(404, f"Instance {instance_uuid} could not be found.")
    try:
        with s.begin_nested():
            s.add(InstancePassword(instance_uuid=instance_uuid, password=password))
            s.flush()
    except IntegrityError:
        raise ConductorError(409, "Password already set.") from None
