"""The delete's conductor side in-process (issue 30 trimmed its statements): the action row keeps the canvas it
sends, and finish_delete gives back the host's resources and the server's group membership."""
from __future__ import annotations

from sqlalchemy import select

from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_same_host_resize import _place


def test_a_delete_keeps_its_canvas_then_frees_the_host_and_the_group(client, world, monkeypatch):
    from core.db import read_session, write_session
    from core.models import Allocation, ComputeNode, Instance, InstanceAction, InstanceGroup, InstanceGroupMember
    from tasks.conductor import boot
    sent: list[tuple] = []
    monkeypatch.setattr(boot, "Chain", lambda steps, ctx: type("C", (), {"apply_async": lambda self: sent.append(
        (steps, ctx))})())
    _place(world, "h1", 4096)
    with write_session() as s:  # the server joined a group at boot (its hint) and holds the host's resources
        group = InstanceGroup(uuid="6a1e3a5c-0d7e-4d4e-9a54-1f0b1d7c2e11", name="g", project_id="proj-a", user_id="u", policy="anti-affinity")
        s.add(group)
        s.flush()
        s.add(InstanceGroupMember(group_id=group.id, instance_uuid=world.server_id, user_id="u"))
        s.get(Instance, s.scalar(select(Instance.id).where(Instance.uuid == world.server_id))).scheduler_hints = {
            "group": group.uuid}
    from bench.api_reads import count_statements
    from tasks.conductor.common import rpc  # noqa: F401 (the API's call runs the conductor's task in-process)
    with count_statements() as api_and_conductor:
        assert client.delete(f"/v2.1/servers/{world.server_id}",
                             headers={**world.a.headers, **COMPUTE}).status_code == 204
    conductor = [q for q in api_and_conductor if q.startswith(("UPDATE instances", "INSERT INTO instance_actions"))
                 or q.startswith("SELECT instances.task_state, instances.vm_state, instances.host ")]
    # The conductor's side: the state in three plain columns, its CAS, the action row with its canvas.
    assert len(conductor) == 3, api_and_conductor
    steps, ctx = sent[-1]
    assert steps == boot.DELETE_STEPS and ctx["task_state"] == "deleting"
    with read_session() as s:
        canvas = s.scalar(select(InstanceAction.canvas).where(InstanceAction.instance_uuid == world.server_id,
                                                              InstanceAction.action == "delete"))
    assert canvas == {"steps": list(steps), "ctx": ctx}, "resume.py sends the stored canvas again if it is lost"
    with count_statements() as stmts:
        boot.finish_delete(ctx)
    # BEGIN, the locked plain read, allocation + node, moves, fixed IPs, password, two quota rows, group member,
    # console tokens, unfinished snapshots, the CAS, the event and one UPDATE finishing the action (and any other
    # open one): 15 on SQLite (its BEGIN IMMEDIATE is a statement here).
    assert len(stmts) == 15, "\n".join(q[:100] for q in stmts)
    assert not any(q.startswith("SELECT instances.id, instances.uuid, instances.display_name") for q in stmts), \
        "finish_delete reads plain columns, not the whole ORM row"
    with read_session() as s:
        node = s.scalars(select(ComputeNode).where(ComputeNode.host == "h1")).one()
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used, node.running_vms) == (0, 0, 0, 0)
        assert s.scalar(select(Allocation.id).where(Allocation.instance_uuid == world.server_id)) is None
        assert s.scalar(select(InstanceGroupMember.id).where(
            InstanceGroupMember.instance_uuid == world.server_id)) is None
        assert s.scalar(select(Instance.vm_state).where(Instance.uuid == world.server_id)) == "deleted"
    from core.writes.resources import release_allocation
    with write_session() as s:
        assert release_allocation(s, world.server_id) is False, "released once"
