"""The conductor's claim re-checks a group member's host against the hosts its group holds *now*.

The scheduler may have decided on a stale view (concurrent boots into one group); the claim, serialised by the
group row lock, skips hosts the policy no longer allows and, when none is left, schedules the boot again.
The claim task runs in-process on SQLite here; the canvases it would start are captured instead of sent.
"""
from __future__ import annotations

import pytest
from celery.exceptions import Ignore

from core.errors import ConductorError


@pytest.fixture
def cloud(stratus_env, monkeypatch):
    from core import db
    from core.models import Flavor, Image
    from core.writes import resources
    from tasks import common
    from tasks.conductor import boot

    started: list[dict] = []
    failures: list[tuple] = []

    class Canvas:
        def __init__(self, ctx: dict):
            self.ctx = ctx

        def apply_async(self):
            started.append(self.ctx)

    monkeypatch.setattr(boot, "boot_canvas", Canvas)
    monkeypatch.setattr(common, "report_failure", lambda ctx, exc, reschedulable=False: failures.append((ctx, exc)))
    with db.write_session() as s:
        for host in ("h1", "h2", "h3"):
            resources.report_service(s, host, {"hypervisor_hostname": host, "hypervisor_type": "fake",
                                               "hypervisor_version": 1, "vcpus": 8, "memory_mb": 8192,
                                               "local_gb": 100, "host_ip": None})
        s.add(Flavor(flavorid="42", name="m1.nano", vcpus=1, memory_mb=128, root_gb=1))
        # the claim puts the boot image in the compute steps' message (compute hosts read no DB)
        s.add(Image(id="img", name="img", status="active", owner="p", visibility="public"))
    return boot, started, failures


def _boot_into(group_uuid: str, name: str) -> str:
    from core import db
    from core.writes import instances
    uuid = f"{name}-0000-0000-0000-000000000000"[:36]
    with db.write_session() as s:
        instances.create_instances(s, {"uuids": [uuid], "name": name, "project_id": "p", "user_id": "u",
                                       "image_id": "img", "flavor_id": "42", "networks": "none", "request_id": "req",
                                       "reservation_id": "r", "scheduler_hints": {"group": group_uuid},
                                       "group_uuid": group_uuid})
    return uuid


def _group(policy: str, rules: dict | None = None) -> str:
    from core import db
    from core.writes import groups
    with db.write_session() as s:
        return groups.create_server_group(s, {"name": policy, "policy": policy, "rules": rules or {},
                                              "project_id": "p", "user_id": "u"})["id"]


def _host_of(uuid: str) -> str | None:
    from core import db
    from core.writes import instances
    with db.read_session() as s:
        return instances.get_instance(s, uuid).host


def _ctx(uuid: str, hosts: list[str], **extra) -> dict:
    return {"instance_uuid": uuid, "request_id": "req", "action": "create", "hosts": hosts, "tried": [], **extra}


def test_claim_skips_hosts_taken_by_other_members_since_scheduling(cloud):
    boot, started, _ = cloud
    group = _group("anti-affinity")
    first, second = _boot_into(group, "first"), _boot_into(group, "second")
    # Both were scheduled on the same stale view: h1 first.
    assert boot.claim(_ctx(first, ["h1", "h2"]))["host"] == "h1"
    out = boot.claim(_ctx(second, ["h1", "h2", "h3"]))
    assert out["host"] == "h2" and out["alternates"] == ["h3"]
    assert (_host_of(first), _host_of(second)) == ("h1", "h2")
    assert started == []


def test_claim_schedules_again_when_every_chosen_host_breaks_the_policy(cloud):
    boot, started, failures = cloud
    group = _group("anti-affinity", {"max_server_per_host": 2})
    a, b, c = (_boot_into(group, n) for n in ("a", "b", "c"))
    boot.claim(_ctx(a, ["h1"]))
    boot.claim(_ctx(b, ["h1"]))  # two per host are allowed
    with pytest.raises(Ignore):
        boot.claim(_ctx(c, ["h1"], explanation="stale"))
    assert _host_of(c) is None and failures == []
    assert len(started) == 1 and started[0]["group_retries"] == 1 and "hosts" not in started[0]
    assert started[0]["instance_uuid"] == c
    # Bounded: after max_attempts rounds the boot fails, naming the filter.
    with pytest.raises(ConductorError):
        boot.claim(_ctx(c, ["h1"], group_retries=3))
    assert "ServerGroupAntiAffinityFilter rejected h1" in str(failures[-1][1])


def test_claim_keeps_affinity_members_together(cloud):
    boot, started, _ = cloud
    group = _group("affinity")
    a, b = _boot_into(group, "a"), _boot_into(group, "b")
    assert boot.claim(_ctx(a, ["h2", "h1"]))["host"] == "h2"
    assert boot.claim(_ctx(b, ["h1", "h3", "h2"]))["host"] == "h2"


def test_soft_policies_and_groupless_boots_are_not_rechecked(cloud):
    boot, started, _ = cloud
    group = _group("soft-anti-affinity")
    a, b = _boot_into(group, "a"), _boot_into(group, "b")
    assert boot.claim(_ctx(a, ["h1"]))["host"] == "h1"
    assert boot.claim(_ctx(b, ["h1"]))["host"] == "h1"


def test_a_claim_reads_the_instance_once(cloud):
    """A claim outside any group: the spec read (which also gives the state, hints and size the claim checks),
    the node's usage and the allocation, the host's zone, the CAS; 6 statements on SQLite with its BEGIN."""
    from bench.api_reads import count_statements
    from core import db
    from core.writes import instances
    boot, _started, _failures = cloud
    uuid = "solo-0000-0000-0000-000000000000"
    with db.write_session() as s:
        instances.create_instances(s, {"uuids": [uuid], "name": "solo", "project_id": "p", "user_id": "u",
                                       "image_id": "img", "flavor_id": "42", "networks": "none", "request_id": "req",
                                       "reservation_id": "r"})
    with count_statements() as stmts:
        out = boot.claim(_ctx(uuid, ["h1"]))
    assert out["host"] == "h1" and out["spec"]["uuid"] == uuid and out["spec"]["vcpus"] == 1
    assert len(stmts) == 6, "\n".join(q[:100] for q in stmts)
    assert sum(q.startswith("SELECT") and "FROM instances" in q for q in stmts) == 1, stmts
