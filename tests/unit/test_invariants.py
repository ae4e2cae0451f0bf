"""bench/invariants.py: a database seeded clean passes; each invariant fails on a database seeded to violate it."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench import invariants
from core.models import (Allocation, Base, ComputeNode, FixedIP, Flavor, Image, Instance, InstanceAction,
                         InstanceFault, InstanceGroup, Migration, Network, QuotaUsage, QuotaUserUsage, Service)

NOW = dt.datetime(2026, 12, 7, 12, 0, 0)


class Cloud:
    """A SQLite database with one host, and helpers that keep its books straight unless told otherwise."""

    def __init__(self, tmp_path):
        self.url = f"sqlite:///{tmp_path / 'inv.sqlite'}"
        self.guests = tmp_path / "fake-guests"
        (self.guests / "fake-1").mkdir(parents=True)
        engine = create_engine(self.url)
        Base.metadata.create_all(engine)
        self.s = Session(engine)
        svc = Service(host="fake-1", binary="stratus-compute", topic="compute")
        self.s.add(svc)
        self.s.flush()
        self.node = ComputeNode(service_id=svc.id, host="fake-1", hypervisor_hostname="fake-1",
                                hypervisor_type="fake", vcpus=16, memory_mb=32768, local_gb=512)
        self.flavor = Flavor(flavorid="1", name="tiny", vcpus=1, memory_mb=512, root_gb=1)
        self.s.add_all([self.node, self.flavor, Network(id="n1", name="private", cidr="10.0.0.0/24",
                                                        gateway="10.0.0.1", bridge="br0")])
        self.s.flush()
        self.usage: dict[tuple, list[int]] = {}

    def server(self, vm_state: str = "active", task_state: str | None = None, deleted: bool = False,
               project: str = "p1", user: str = "u1", books: bool = True, guest: bool = True,
               age: float = 0) -> str:
        u = str(uuid.uuid4())
        self.s.add(Instance(uuid=u, display_name="s", hostname="s", project_id=project, user_id=user,
                            image_ref="i", flavor_id=self.flavor.id, flavor_snapshot={}, vcpus=1, memory_mb=512,
                            root_gb=1, vm_state=vm_state, task_state=task_state, host="fake-1",
                            reservation_id="r", networks_request="none", deleted=1 if deleted else 0,
                            updated_at=NOW - dt.timedelta(seconds=age)))
        if not deleted and books:  # an ERROR boot has released its claim, not its quota (Nova)
            self.s.add(Allocation(instance_uuid=u, compute_node_id=self.node.id, vcpus=1, memory_mb=512, disk_gb=1))
            self.node.vcpus_used += 1
            self.node.memory_mb_used += 512
            self.node.local_gb_used += 1
        if not deleted:
            for key in ((project,), (project, user)):
                used = self.usage.setdefault(key, [0, 0, 0, 0])
                used[0], used[1], used[2] = used[0] + 1, used[1] + 1, used[2] + 512
        if not deleted and guest:
            (self.guests / "fake-1" / f"{u}.json").write_text("{}")
        return u

    def check(self, history: list[dict] | None = None) -> invariants.Report:
        for key, (n, cores, ram, groups) in self.usage.items():
            model = QuotaUsage if len(key) == 1 else QuotaUserUsage
            ids = dict(zip(("project_id", "user_id"), key))
            self.s.merge(model(**ids, instances=n, cores=cores, ram=ram, server_groups=groups))
        self.s.commit()
        return invariants.check(self.url, self.guests, history, build_timeout=900, task_timeout=900, now=NOW)


@pytest.fixture
def cloud(tmp_path):
    c = Cloud(tmp_path)
    yield c
    c.s.close()


def test_clean_cloud_passes(cloud):
    a = cloud.server()
    b = cloud.server(vm_state="stopped")
    gone = cloud.server(deleted=True, guest=False)
    err = cloud.server(vm_state="error", books=False, guest=False)
    cloud.s.add(InstanceFault(instance_uuid=err, code=500, message="boom"))
    cloud.s.add(InstanceAction(action="create", instance_uuid=a, request_id="req-1", finish_time=NOW))
    cloud.s.add(FixedIP(network_id="n1", address="10.0.0.5", mac="fa:16:3e:00:00:01", instance_uuid=a))
    cloud.s.add(Image(id=str(uuid.uuid4()), name="snap", status="active"))
    history = [{"op": "boot", "status": 202, "server_id": s} for s in (a, b, gone, err)]
    history += [{"op": "boot", "status": 503}, {"op": "boot", "status": 403}, {"op": "stop", "status": 0},
                {"chaos": "kill conductor"}]
    report = cloud.check(history)
    assert report.total == 0, report.render()
    assert report.counts["faults injected"] == {"kill": 1}
    assert report.counts["errors by kind"] == {"HTTP 503": 1, "HTTP 403": 1, "no answer": 1}


def _violated(report: invariants.Report) -> set[str]:
    return set(report.violations)


def test_accepted_boot_stuck_in_build(cloud):
    u = cloud.server(vm_state="building", task_state="spawning", guest=False)
    assert _violated(cloud.check([{"op": "boot", "status": 202, "server_id": u}])) == {"accepted-not-terminal"}


def test_accepted_boot_forgotten(cloud):
    report = cloud.check([{"op": "boot", "status": 202, "server_id": str(uuid.uuid4())}])
    assert _violated(report) == {"accepted-then-forgotten"}


def test_error_without_fault(cloud):
    u = cloud.server(vm_state="error", books=False, guest=False)
    assert _violated(cloud.check([{"op": "boot", "status": 202, "server_id": u}])) == {"error-without-fault"}


def test_refusal_with_500(cloud):
    assert _violated(cloud.check([{"op": "boot", "status": 500}])) == {"refused-with-5xx"}


def test_task_state_past_its_expiry(cloud):
    cloud.server(task_state="powering-off", age=901)
    cloud.server(task_state="powering-off", age=100)  # in time
    assert _violated(cloud.check()) == {"task-state-expired"}


def test_action_without_finish(cloud):
    u = cloud.server()
    busy = cloud.server(task_state="rebooting")
    cloud.s.add_all([InstanceAction(action="stop", instance_uuid=u, request_id="req-2"),
                     InstanceAction(action="reboot", instance_uuid=busy, request_id="req-3")])
    report = cloud.check()
    assert _violated(report) == {"action-without-finish"} and len(report.violations["action-without-finish"]) == 1


def test_allocation_of_deleted_instance(cloud):
    u = cloud.server(deleted=True, guest=False)
    cloud.s.add(Allocation(instance_uuid=u, compute_node_id=cloud.node.id, vcpus=1, memory_mb=512, disk_gb=1))
    cloud.node.vcpus_used, cloud.node.memory_mb_used, cloud.node.local_gb_used = 1, 512, 1
    assert _violated(cloud.check()) == {"orphaned-allocation"}


def test_allocation_of_a_move_in_flight_is_fine(cloud):
    u = cloud.server()
    mig = Migration(instance_uuid=u, status="finished", migration_type="resize", new_flavor={"vcpus": 1, "ram": 512})
    cloud.s.add(mig)
    cloud.s.flush()
    cloud.s.add(Allocation(instance_uuid=mig.uuid, compute_node_id=cloud.node.id, vcpus=1, memory_mb=512, disk_gb=1))
    cloud.node.vcpus_used += 1
    cloud.node.memory_mb_used += 512
    cloud.node.local_gb_used += 1
    assert cloud.check().total == 0


def test_host_usage_not_the_sum_of_its_allocations(cloud):
    cloud.server()
    cloud.node.vcpus_used += 2
    assert _violated(cloud.check()) == {"host-usage-mismatch"}


def test_quota_usage_not_what_the_project_holds(cloud):
    cloud.server()
    cloud.usage[("p1",)][1] += 4  # cores booked that no server holds
    assert _violated(cloud.check()) == {"quota-usage-mismatch"}


def test_server_group_not_booked(cloud):
    cloud.s.add(InstanceGroup(name="g", project_id="p2", user_id="u2", policy="affinity"))
    report = cloud.check()
    assert _violated(report) == {"quota-usage-mismatch"} and len(report.violations["quota-usage-mismatch"]) == 2


def test_guest_without_row(cloud):
    (cloud.guests / "fake-1" / f"{uuid.uuid4()}.json").write_text("{}")
    assert _violated(cloud.check()) == {"guest-without-row"}


def test_guest_of_a_deleted_row(cloud):
    u = cloud.server(deleted=True, guest=False)
    (cloud.guests / "fake-1" / f"{u}.json").write_text(json.dumps({}))
    assert _violated(cloud.check()) == {"guest-without-row"}


def test_live_row_without_guest(cloud):
    cloud.server(guest=False)
    assert _violated(cloud.check()) == {"row-without-guest"}


def test_image_stuck_saving(cloud):
    cloud.s.add(Image(id=str(uuid.uuid4()), name="snap", status="saving"))
    assert _violated(cloud.check()) == {"image-stuck-saving"}


def test_snapshot_queued_for_a_deleted_server(cloud):
    gone = cloud.server(deleted=True, guest=False)
    busy = cloud.server(task_state="image_snapshot")
    for n, u in enumerate((gone, busy)):  # only the deleted server's is stuck; an upload not yet sent is not
        cloud.s.add(Image(id=str(uuid.uuid4()), name=f"snap{n}", status="queued",
                          properties={"instance_uuid": u, "image_type": "snapshot"}))
    cloud.s.add(Image(id=str(uuid.uuid4()), name="upload", status="queued"))
    report = cloud.check()
    assert _violated(report) == {"image-stuck-saving"} and len(report.violations["image-stuck-saving"]) == 1


def test_fixed_ip_of_deleted_server(cloud):
    u = cloud.server(deleted=True, guest=False)
    cloud.s.add(FixedIP(network_id="n1", address="10.0.0.9", mac="fa:16:3e:00:00:09", instance_uuid=u))
    assert _violated(cloud.check()) == {"fixed-ip-of-deleted-server"}


def test_command_line_exit_code(cloud, tmp_path, capsys):
    cloud.server(guest=False)
    cloud.check()
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({"op": "boot", "status": 502}) + "\n")
    assert invariants.main(["--db", cloud.url, "--guests", str(cloud.guests), "--history", str(history)]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION row-without-guest (1)" in out and "VIOLATION refused-with-5xx (1)" in out
    (cloud.guests / "fake-1").rename(cloud.guests / "gone")
    assert invariants.main(["--db", cloud.url]) == 0


def test_libvirt_domains_are_compared_with_the_rows(cloud, monkeypatch, tmp_path):
    """The libvirt variant (tools/soak.py --driver libvirt): this cloud's domains (disks under its instances path;
    libvirtd is shared) against the rows, on the one host libvirt serves."""
    import sys
    import types
    ours, stray, foreign = cloud.server(guest=False), str(uuid.uuid4()), str(uuid.uuid4())
    missing = cloud.server(guest=False)
    path = tmp_path / "instances"

    class Dom:
        def __init__(self, name: str, disk_dir: str):
            self._name, self._xml = name, f"<domain><name>{name}</name><source file='{disk_dir}/{name}/disk'/>"

        def name(self) -> str:
            return self._name

        def XMLDesc(self, _flags: int) -> str:  # noqa: N802 (libvirt's name)
            return self._xml

    conn = types.SimpleNamespace(listAllDomains=lambda _f: [Dom(ours, str(path)), Dom(stray, str(path)),
                                                             Dom(foreign, "/var/tmp/another-cloud")],
                                 close=lambda: None)
    monkeypatch.setitem(sys.modules, "libvirt", types.SimpleNamespace(openReadOnly=lambda uri: conn))
    guests = invariants.libvirt_guests("qemu:///system", path, "fake-1")
    assert guests == {ours: {"fake-1"}, stray: {"fake-1"}}
    cloud.check()  # the books
    report = invariants.check(cloud.url, None, None, now=NOW, guests=guests)
    assert _violated(report) == {"guest-without-row", "row-without-guest"}
    assert report.violations["guest-without-row"] == [f"{stray} on ['fake-1'] (no row)"]
    assert report.violations["row-without-guest"] == [f"{missing} active on fake-1"]
