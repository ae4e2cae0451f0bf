"""tasks/conductor/resume.py in-process: what an action keeps of its canvas, when it counts as stalled, that its
spec is rebuilt for the host it goes to, that nothing goes to a queue no live consumer serves, and once only."""
from __future__ import annotations

import datetime as dt
import types

from sqlalchemy import select

from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_same_host_resize import _act, _add_host, _place, big, same_host, started  # noqa: F401


def test_a_stalled_resize_is_sent_again_once_with_its_spec_rebuilt(client, world, big, started,  # noqa: F811
                                                                     monkeypatch):
    from core.db import read_session, write_session
    from core.models import InstanceAction, utcnow
    from core.settings import get_settings
    from tasks.conductor import resume
    _place(world, "h1", 4096)
    with write_session() as s:
        _add_host(s, "h2", 4096)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    with read_session() as s:
        canvas = s.scalar(select(InstanceAction.canvas).where(InstanceAction.instance_uuid == world.server_id,
                                                              InstanceAction.action == "resize"))
    assert canvas["steps"] == ["stratus.compute.move_op"] * 2 + ["stratus.conductor.finish_move"]
    assert "spec" not in canvas["ctx"] and started[0]["spec"], "the sealed spec is sent, never stored"

    assert resume.stalled_actions(utcnow()) == [], "not stalled before the grace period"
    later = utcnow() + dt.timedelta(seconds=get_settings().stalled_build_resume_after + 1)
    rows = resume.stalled_actions(later)
    assert [r.uuid for r in rows] == [world.server_id]
    sent: list[tuple] = []
    monkeypatch.setattr(resume, "Chain", lambda steps, ctx: types.SimpleNamespace(
        apply_async=lambda: sent.append((steps, ctx))))
    assert resume.resume_actions(rows, {"conductor", "compute.h1"}) == 0 and sent == [], \
        "the destination's queue has no live consumer"
    assert resume.resume_actions(rows, {"conductor", "compute.h1", "compute.h2"}) == 1
    steps, ctx = sent[0]
    assert steps == canvas["steps"] and ctx["ops"] == [["resize_source", "h1"], ["resize_dest", "h2"]]
    assert ctx["spec"] and ctx["spec"]["uuid"] == world.server_id
    assert resume.stalled_actions(later) == [], "an action is resumed once"
    req = client.get(f"/v2.1/servers/{world.server_id}/os-instance-actions",
                     headers={**world.a.headers, **COMPUTE}).get_json()["instanceActions"][0]["request_id"]
    events = client.get(f"/v2.1/servers/{world.server_id}/os-instance-actions/{req}",
                        headers={**world.admin.headers, **COMPUTE}).get_json()["instanceAction"]["events"]
    assert [e["event"] for e in events] == ["conductor_resume_task"]


def test_an_older_action_is_not_resumed_for_a_newer_task_state(client, world, started, monkeypatch):  # noqa: F811
    """The canvas resumed is the one that set the current task_state: a stop whose finish ran, then a task_state
    set by something that kept no canvas (here by hand), leaves nothing to resume."""
    from core.db import write_session
    from core.models import Instance, utcnow
    from core.settings import get_settings
    from tasks.conductor import resume
    _place(world, "h1", 4096)
    assert _act(client, world, {"os-stop": None}).status_code == 202
    later = utcnow() + dt.timedelta(seconds=get_settings().stalled_build_resume_after + 1)
    assert [r.canvas["ctx"]["action"] for r in resume.stalled_actions(later)] == ["stop"]
    with write_session() as s:
        s.execute(Instance.__table__.update().where(Instance.uuid == world.server_id)
                  .values(task_state="migrating"))
    assert resume.stalled_actions(later) == []
