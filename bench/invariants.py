"""The books-and-guests invariants of a Stratus cloud, checked at once over its database (any URL: SQLite,
PostgreSQL, MariaDB), optionally its fake driver's guest registry and a history of API requests (the chaos soak,
tools/soak.py, writes one). Meant for a quiet cloud: nothing in flight that the workload still waits for.

    python -m bench.invariants --db URL [--guests DIR | --libvirt URI --instances DIR --host H] [--history FILE]
        [--build-timeout S] [--task-timeout S]

``--guests``: the fake driver's registry, ``<state_dir>/fake-guests`` (one ``<host>/<uuid>.json`` per guest,
drivers/fake.py); or ``--libvirt URI --instances PATH --host HOST``: the libvirt domains whose disks are under
PATH, as HOST's guests. ``--history``: JSON lines, one request each: ``{"op", "status", "server_id"?}`` (status 0: no
HTTP answer), and ``{"chaos": what}`` for each fault injected. Prints every violation and the counts; exit 1 on
any violation."""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Connection

from core.models import (Allocation, ComputeNode, FixedIP, Image, Instance, InstanceAction, InstanceFault,
                         InstanceGroup, Migration, QuotaUsage, QuotaUserUsage)
from core.writes.resources import IN_FLIGHT_MIGRATIONS

# Where an accepted request may end (vm_state with no task): SHELVED_OFFLOADED needs shelved_offload_time 0.
TERMINAL = ("active", "stopped", "shelved_offloaded")
# vm_states whose guest exists on the instance's host (fake driver: a JSON file there).
WITH_GUEST = ("active", "stopped", "paused", "suspended", "resized", "rescued", "shelved")


@dataclasses.dataclass
class Report:
    violations: dict[str, list[str]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    counts: dict[str, dict] = dataclasses.field(default_factory=dict)

    def bad(self, invariant: str, what: str) -> None:
        self.violations[invariant].append(what)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def render(self) -> str:
        lines = [f"{k}: {json.dumps(v, sort_keys=True)}" for k, v in self.counts.items()]
        for invariant, items in sorted(self.violations.items()):
            lines.append(f"VIOLATION {invariant} ({len(items)}):")
            lines += [f"  {item}" for item in items[:50]] + ([f"  ... {len(items) - 50} more"] if len(items) > 50
                                                            else [])
        lines.append(f"{self.total} violation(s)" if self.total else "0 violations: every invariant holds")
        return "\n".join(lines)


def read_history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check(db_url: str, guests_dir: Path | None = None, history: list[dict] | None = None,
          build_timeout: int = 900, task_timeout: int = 900, now: dt.datetime | None = None,
          guests: dict[str, set[str]] | None = None) -> Report:
    """``guests_dir``: the fake driver's registry; or ``guests`` read elsewhere (``libvirt_guests``)."""
    report = Report()
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # the rows' naive UTC (core.models.utcnow)
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            if history is not None:
                _requests(c, history, report)
            _task_states(c, report, now, build_timeout, task_timeout)
            _actions(c, report)
            _allocations(c, report)
            _quotas(c, report)
            _images_and_ips(c, report)
            if guests_dir is not None:
                guests = fake_guests(guests_dir)
            if guests is not None:
                _guests(c, guests, report)
            _counts(c, report)
    finally:
        engine.dispose()
    return report


def _instances(c: Connection) -> dict[str, dict]:
    rows = c.execute(select(Instance.uuid, Instance.vm_state, Instance.task_state, Instance.deleted, Instance.host,
                            Instance.project_id, Instance.user_id, Instance.vcpus, Instance.memory_mb,
                            Instance.updated_at))
    return {r.uuid: r._asdict() for r in rows}


def _requests(c: Connection, history: list[dict], report: Report) -> None:
    """Every accepted request's server ended terminal (or deleted); no refusal but a 4xx or a 503."""
    instances = _instances(c)
    faulted = {u for (u,) in c.execute(select(InstanceFault.instance_uuid).distinct())}
    requests_ = [h for h in history if "op" in h]
    accepted: dict[str, str] = {}
    for h in requests_:
        status = h.get("status", 0)
        if 200 <= status < 300 and h.get("server_id"):
            accepted.setdefault(h["server_id"], h["op"])
        if status >= 500 and status != 503:
            report.bad("refused-with-5xx", f"{h['op']} {h.get('server_id') or ''} answered {status}: "
                                           f"{str(h.get('body', ''))[:200]}")
    for uuid, op in accepted.items():
        inst = instances.get(uuid)
        if inst is None:
            report.bad("accepted-then-forgotten", f"{uuid} ({op}): no instance row")
        elif inst["deleted"]:
            continue
        elif inst["vm_state"] == "error":
            if uuid not in faulted:
                report.bad("error-without-fault", f"{uuid} ({op})")
        elif inst["vm_state"] not in TERMINAL or inst["task_state"] is not None:
            report.bad("accepted-not-terminal", f"{uuid} ({op}): vm_state={inst['vm_state']} "
                                                f"task_state={inst['task_state']}")
    report.counts["operations"] = dict(sorted(collections.Counter(
        f"{h['op']} {h.get('status', 0)}" for h in requests_).items()))
    report.counts["faults injected"] = dict(collections.Counter(h["chaos"].split()[0] for h in history
                                                                if "chaos" in h))
    report.counts["errors by kind"] = dict(collections.Counter(
        "no answer" if not h.get("status") else f"HTTP {h['status']}"
        for h in requests_ if not 200 <= h.get("status", 0) < 300))


def _task_states(c: Connection, report: Report, now: dt.datetime, build_timeout: int, task_timeout: int) -> None:
    """Housekeeping's expiry (tasks/periodic.expire_stuck_instances): BUILD after instance_build_timeout, any other
    task_state after task_state_timeout; a ``deleting`` task is held to the task timeout too."""
    for inst in _instances(c).values():
        if inst["deleted"] or inst["task_state"] is None:
            continue
        limit = build_timeout if inst["vm_state"] == "building" else task_timeout
        age = (now - inst["updated_at"]).total_seconds()
        if age > limit:
            report.bad("task-state-expired", f"{inst['uuid']} vm_state={inst['vm_state']} "
                                             f"task_state={inst['task_state']} for {age:.0f} s (limit {limit} s)")


def _actions(c: Connection, report: Report) -> None:
    """An action without a finish is only allowed while its instance is busy with a task."""
    rows = c.execute(select(InstanceAction.instance_uuid, InstanceAction.action, InstanceAction.request_id,
                            Instance.task_state, Instance.deleted)
                     .outerjoin(Instance, Instance.uuid == InstanceAction.instance_uuid)
                     .where(InstanceAction.finish_time.is_(None)))
    for r in rows:
        if r.task_state is None or r.deleted:
            report.bad("action-without-finish", f"{r.instance_uuid} {r.action} request {r.request_id}")


def _allocations(c: Connection, report: Report) -> None:
    live = {u for (u,) in c.execute(select(Instance.uuid).where(Instance.deleted == 0))}
    moving = {u for (u,) in c.execute(select(Migration.uuid).where(Migration.status.in_(IN_FLIGHT_MIGRATIONS),
                                                                  Migration.instance_uuid.in_(live)))}
    sums: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for a in c.execute(select(Allocation.instance_uuid, Allocation.compute_node_id, Allocation.vcpus,
                              Allocation.memory_mb, Allocation.disk_gb)):
        if a.instance_uuid not in live and a.instance_uuid not in moving:
            report.bad("orphaned-allocation", f"{a.instance_uuid} on node {a.compute_node_id}: "
                                              f"{a.vcpus} vcpus {a.memory_mb} MB {a.disk_gb} GB")
        s = sums[a.compute_node_id]
        s[0], s[1], s[2] = s[0] + a.vcpus, s[1] + a.memory_mb, s[2] + a.disk_gb
    for n in c.execute(select(ComputeNode.id, ComputeNode.host, ComputeNode.vcpus_used, ComputeNode.memory_mb_used,
                              ComputeNode.local_gb_used)):
        used, summed = [n.vcpus_used, n.memory_mb_used, n.local_gb_used], sums.get(n.id, [0, 0, 0])
        if used != summed:
            report.bad("host-usage-mismatch", f"{n.host}: used (vcpus, MB, GB) {tuple(used)} != sum of its "
                                              f"allocations {tuple(summed)}")


def _quotas(c: Connection, report: Report) -> None:
    """quota_usages (and per user) against what the projects hold: live instances, their cores and RAM (a resize
    in flight counts its new flavor, as moves.reserve_resize does), server groups."""
    new_flavor = {m.instance_uuid: m.new_flavor for m in c.execute(
        select(Migration.instance_uuid, Migration.new_flavor).where(
            Migration.status.in_(IN_FLIGHT_MIGRATIONS), Migration.migration_type == "resize"))}
    held: dict[tuple, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for inst in _instances(c).values():
        if inst["deleted"]:
            continue
        flavor = new_flavor.get(inst["uuid"]) or {}
        vcpus, ram = flavor.get("vcpus", inst["vcpus"]), flavor.get("ram", inst["memory_mb"])
        for key in ((inst["project_id"],), (inst["project_id"], inst["user_id"])):
            h = held[key]
            h[0], h[1], h[2] = h[0] + 1, h[1] + vcpus, h[2] + ram
    for g in c.execute(select(InstanceGroup.project_id, InstanceGroup.user_id)):
        held[(g.project_id,)][3] += 1
        held[(g.project_id, g.user_id)][3] += 1
    booked: dict[tuple, list[int]] = {}
    for u in c.execute(select(QuotaUsage)):
        booked[(u.project_id,)] = [u.instances, u.cores, u.ram, u.server_groups]
    for u in c.execute(select(QuotaUserUsage)):
        booked[(u.project_id, u.user_id)] = [u.instances, u.cores, u.ram, u.server_groups]
    for key in sorted(set(held) | set(booked)):
        h, b = held.get(key, [0, 0, 0, 0]), booked.get(key, [0, 0, 0, 0])
        if [x or 0 for x in b] != h:
            who = f"project {key[0]}" + (f" user {key[1]}" if len(key) > 1 else "")
            report.bad("quota-usage-mismatch", f"{who}: booked (instances, cores, ram, server_groups) "
                                               f"{tuple(b)} != held {tuple(h)}")


def _images_and_ips(c: Connection, report: Report) -> None:
    """An image ``saving``, or a snapshot still ``queued`` (the compute API's SAVING too) whose server is gone
    or no longer busy with a task."""
    busy = {u for (u,) in c.execute(select(Instance.uuid).where(Instance.deleted == 0,
                                                                Instance.task_state.isnot(None)))}
    for i in c.execute(select(Image.id, Image.name, Image.status, Image.properties, Image.updated_at).where(
            Image.status.in_(("saving", "queued")))):
        props = i.properties or {}
        snapshot = props.get("image_type") in ("snapshot", "backup") and props.get("instance_uuid")
        if i.status == "saving" or (snapshot and props["instance_uuid"] not in busy):
            report.bad("image-stuck-saving", f"{i.id} {i.name!r} {i.status} since {i.updated_at}")
    live = select(Instance.uuid).where(Instance.deleted == 0)
    for ip in c.execute(select(FixedIP.address, FixedIP.instance_uuid).where(~FixedIP.instance_uuid.in_(live))):
        report.bad("fixed-ip-of-deleted-server", f"{ip.address} held by {ip.instance_uuid}")


def fake_guests(guests_dir: Path) -> dict[str, set[str]]:
    """The fake driver's registry, ``<guests_dir>/<host>/<uuid>.json``: the hosts of each guest."""
    guests: dict[str, set[str]] = collections.defaultdict(set)
    for path in guests_dir.glob("*/*.json"):
        guests[path.stem].add(path.parent.name)
    return guests


def libvirt_guests(uri: str, instances_path: Path, host: str) -> dict[str, set[str]]:
    """The domains of one libvirt host (``uri``) whose disks live under ``instances_path`` (a shared libvirtd
    may run other clouds' domains too), as guests of ``host``; a domain is named by its instance's uuid."""
    import libvirt
    conn = libvirt.openReadOnly(uri)
    try:
        return {d.name(): {host} for d in conn.listAllDomains(0) if str(instances_path) in d.XMLDesc(0)}
    finally:
        conn.close()


def _guests(c: Connection, guests: dict[str, set[str]], report: Report) -> None:
    """Guests (fake registry or libvirt domains) against rows: no guest without a live row, no live row whose
    host lacks its guest."""
    instances = _instances(c)
    for uuid, hosts in sorted(guests.items()):
        inst = instances.get(uuid)
        if inst is None or inst["deleted"]:
            report.bad("guest-without-row", f"{uuid} on {sorted(hosts)} "
                                            f"({'no row' if inst is None else 'row deleted'})")
    for inst in instances.values():
        if not inst["deleted"] and inst["task_state"] is None and inst["vm_state"] in WITH_GUEST \
                and inst["host"] not in guests.get(inst["uuid"], ()):
            report.bad("row-without-guest", f"{inst['uuid']} {inst['vm_state']} on {inst['host']}")
    report.counts["guests"] = {"files": sum(len(h) for h in guests.values())}


def _counts(c: Connection, report: Report) -> None:
    report.counts["instances"] = dict(sorted(collections.Counter(
        "deleted" if i["deleted"] else i["vm_state"] for i in _instances(c).values()).items()))
    report.counts["faults by message"] = {m[:80]: n for m, n in c.execute(
        select(InstanceFault.message, func.count()).group_by(InstanceFault.message)
        .order_by(func.count().desc()).limit(15))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.invariants", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True, help="SQLAlchemy URL of the Stratus database")
    p.add_argument("--guests", type=Path, help="the fake driver's registry (<state_dir>/fake-guests)")
    p.add_argument("--libvirt", metavar="URI", help="compare the libvirt domains of this URI with the rows")
    p.add_argument("--instances", type=Path, help="with --libvirt: the cloud's instances_path (its domains' disks)")
    p.add_argument("--host", help="with --libvirt: the compute host that libvirt serves")
    p.add_argument("--history", type=Path, help="JSON lines of the API requests made (tools/soak.py)")
    p.add_argument("--build-timeout", type=int, help="instance_build_timeout (default: this environment's setting)")
    p.add_argument("--task-timeout", type=int, help="task_state_timeout (default: this environment's setting)")
    args = p.parse_args(argv)
    from core.settings import get_settings
    cfg = get_settings()
    if args.libvirt and not (args.instances and args.host):
        p.error("--libvirt needs --instances and --host")
    report = check(args.db, args.guests, read_history(args.history) if args.history else None,
                   build_timeout=args.build_timeout or cfg.instance_build_timeout,
                   task_timeout=args.task_timeout or cfg.task_state_timeout,
                   guests=libvirt_guests(args.libvirt, args.instances, args.host) if args.libvirt else None)
    print(report.render())
    return 1 if report.total else 0


if __name__ == "__main__":
    sys.exit(main())
