"""Shelve's snapshot bookkeeping in the API and conductor (compute steps stood in for): the ``<name>-shelved``
image, ``shelved_image_id`` in the system metadata, unshelve booting from it and deleting it."""
from __future__ import annotations

import io

import pytest

from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)


@pytest.fixture
def runs(monkeypatch) -> list[dict]:
    """The move canvases the conductor starts (their first context), instead of sending them."""
    from tasks.conductor import moves
    started: list[dict] = []
    monkeypatch.setattr(moves, "run_ops", lambda ctx, finish="": started.append(ctx))
    return started


def _instance(uuid: str):
    from core.db import read_session
    from core.models import Instance
    with read_session() as s:
        return s.query(Instance).filter(Instance.uuid == uuid).one()


def _on_host(world: World) -> None:
    from core.db import write_session
    from core.models import ComputeNode, Instance, Service, utcnow
    with write_session() as s:
        svc = Service(host="h1", binary="nova-compute", topic="compute", last_seen_at=utcnow())
        s.add(svc)
        s.flush()
        s.add(ComputeNode(service_id=svc.id, host="h1", hypervisor_hostname="h1", hypervisor_type="fake", vcpus=8,
                          memory_mb=8192, local_gb=80))
        inst = s.query(Instance).filter(Instance.uuid == world.server_id).one()
        inst.vm_state, inst.task_state, inst.host, inst.node = "active", None, "h1", "h1"


def _compute_did(ctx: dict, data: bytes | None = None) -> dict:
    """What the compute step returns: the snapshot's data uploaded through the Image API (the compute's own
    client and credential, tests/unit/image_api.py), the guest gone."""
    done = {**ctx, "ops": [], "power_state": 0}
    if data is not None:
        done.update(upload(ctx["image_id"], data))
    return done


def upload(image_id: str, data: bytes) -> dict:
    """A compute's snapshot upload (tasks/compute_actions._snapshot): PUT .../file with the service credential."""
    from tasks import image_service, snapshot_upload
    body = snapshot_upload.HashingReader(io.BytesIO(data))
    image_service.client().upload(image_id, body)
    return {"image_size": body.size, "image_md5": body.md5.hexdigest(), "image_sha256": body.sha256.hexdigest()}


def test_shelve_records_its_snapshot_and_unshelve_boots_from_it_then_deletes_it(client, world: World, runs):
    from core.db import read_session
    from core import image_store as store
    from core.models import Image
    from tasks.conductor.moves import finish_move

    _on_host(world)
    url, member = f"/v2.1/servers/{world.server_id}/action", {**world.a.headers, **COMPUTE}
    assert client.post(url, json={"shelve": None}, headers=member).status_code == 202
    (ctx,) = runs
    with read_session() as s:
        image = s.get(Image, ctx["image_id"])
        assert (image.name, image.status, image.owner) == ("a-vm-shelved", "queued", world.a.project_id)
        assert image.properties["image_type"] == "snapshot"
    assert ctx["offload"] and ctx["ops"] == [["shelve_offload", "h1"]]
    finish_move(_compute_did(ctx, b"disk" * 100))
    inst = _instance(world.server_id)
    assert inst.vm_state == "shelved_offloaded" and inst.host is None
    assert inst.system_metadata["shelved_image_id"] == ctx["image_id"]
    assert inst.system_metadata["shelved_host"] == "h1"
    with read_session() as s:
        assert s.get(Image, ctx["image_id"]).status == "active" and s.get(Image, ctx["image_id"]).size == 400

    assert client.post(url, json={"unshelve": None}, headers=member).status_code == 202
    unshelve = runs[1]
    assert unshelve["boot_image_id"] == ctx["image_id"] and unshelve["ops"] == [["spawn_here", "h1"]]
    finish_move(_compute_did(unshelve))
    inst = _instance(world.server_id)
    assert inst.vm_state == "active" and inst.system_metadata == {}
    with read_session() as s:
        assert s.get(Image, ctx["image_id"]) is None
    assert not store.exists(ctx["image_id"])


def test_refused_or_failed_shelve_leaves_no_image(client, world: World, runs):
    from core.db import read_session
    from core.models import Image
    from tasks.conductor.moves import move_failed

    url, member = f"/v2.1/servers/{world.server_id}/action", {**world.a.headers, **COMPUTE}
    with read_session() as s:
        before = s.query(Image).count()
    assert client.post(url, json={"shelve": None}, headers=member).status_code == 409  # still building
    _on_host(world)
    assert client.post(url, json={"shelve": None}, headers=member).status_code == 202
    (ctx,) = runs
    move_failed(ctx, "snapshot failed", "")
    with read_session() as s:
        assert s.query(Image).count() == before
    inst = _instance(world.server_id)
    assert inst.task_state is None and not inst.system_metadata


def test_unshelve_refuses_when_the_shelved_image_is_gone(client, world: World, runs):
    from core.db import write_session
    from core.models import Image
    from tasks.conductor.moves import finish_move

    _on_host(world)
    url, member = f"/v2.1/servers/{world.server_id}/action", {**world.a.headers, **COMPUTE}
    client.post(url, json={"shelve": None}, headers=member)
    finish_move(_compute_did(runs[0], b"x"))
    with write_session() as s:
        s.query(Image).filter(Image.id == runs[0]["image_id"]).delete()
    resp = client.post(url, json={"unshelve": None}, headers=member)
    assert resp.status_code == 409 and "shelved image" in resp.get_json()["conflictingRequest"]["message"]
    assert _instance(world.server_id).vm_state == "shelved_offloaded"


def test_delete_during_unshelve_destroys_the_new_guest_and_finishes_the_action(client, world: World, runs,
                                                                               monkeypatch):
    """Found by the chaos soak: a SHELVED_OFFLOADED server has no host, so a delete during its unshelve destroys
    nothing; the guest the unshelve then spawned was left behind and its action never finished."""
    import types

    from core.db import read_session, write_session
    from core.models import Instance, InstanceAction, InstanceActionEvent
    from tasks.conductor import moves

    _on_host(world)
    url, member = f"/v2.1/servers/{world.server_id}/action", {**world.a.headers, **COMPUTE}
    assert client.post(url, json={"shelve": None}, headers=member).status_code == 202
    moves.finish_move(_compute_did(runs[0], b"disk"))
    assert client.post(url, json={"unshelve": None}, headers=member).status_code == 202
    unshelve = runs[1]
    with write_session() as s:  # the delete ran meanwhile (finish_delete: the row is deleted)
        inst = s.query(Instance).filter(Instance.uuid == world.server_id).one()
        inst.deleted, inst.vm_state, inst.task_state = inst.id, "deleted", None
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(moves, "sig", lambda name, ctx: types.SimpleNamespace(
        apply_async=lambda: sent.append((name, ctx))))
    moves.finish_move(_compute_did(unshelve))
    assert [(n, c["host"], c["action"]) for n, c in sent] == [("stratus.compute.terminate", "h1", "cleanup")]
    with read_session() as s:
        action = s.query(InstanceAction).filter(InstanceAction.request_id == unshelve["request_id"]).one()
        assert action.action == "unshelve" and action.finish_time is not None and action.message == "Error"
        (event,) = s.query(InstanceActionEvent).filter(InstanceActionEvent.action_id == action.id)
        assert event.result == "Error"


def test_delete_finishes_the_actions_it_cut_short(client, world: World, runs):
    """Found by the chaos soak: an unshelve whose compute step found the server deleting ended quietly, and its
    action stayed unfinished for ever; the delete finishes it (failed), and its own action succeeds."""
    from core.db import read_session, write_session
    from core.models import Instance, InstanceAction
    from tasks.conductor import boot, moves

    _on_host(world)
    url, member = f"/v2.1/servers/{world.server_id}/action", {**world.a.headers, **COMPUTE}
    assert client.post(url, json={"shelve": None}, headers=member).status_code == 202
    moves.finish_move(_compute_did(runs[0], b"disk"))
    assert client.post(url, json={"unshelve": None}, headers=member).status_code == 202
    with write_session() as s:  # the delete's conductor step: task_state deleting, its action started
        s.query(Instance).filter(Instance.uuid == world.server_id).one().task_state = "deleting"
        moves.start_action(s, world.server_id, "delete", "req-delete", None, None)
    boot.finish_delete({"instance_uuid": world.server_id, "request_id": "req-delete", "action": "delete",
                        "host": None, "task_state": "deleting"})
    with read_session() as s:
        actions = {a.action: (a.finish_time is not None, a.message) for a in
                   s.query(InstanceAction).filter(InstanceAction.instance_uuid == world.server_id)}
    assert actions["unshelve"] == (True, "Error") and actions["delete"] == (True, None)
    assert all(done for done, _ in actions.values())


def test_delete_during_shelve_deletes_the_unfinished_snapshot(client, world: World, runs):
    """Found by the chaos soak: a delete while shelve was taking its snapshot left the ``<name>-shelved`` image
    queued for ever (Nova deletes the image of a snapshot whose instance disappeared)."""
    from core.db import read_session, write_session
    from core.models import Image, Instance
    from tasks.conductor import boot

    _on_host(world)
    url, member = f"/v2.1/servers/{world.server_id}/action", {**world.a.headers, **COMPUTE}
    with write_session() as s:  # another server's snapshot in flight, and a user's queued image: both kept
        other = Image(id="11111111-1111-1111-1111-111111111111", name="other", status="queued",
                      owner=world.a.project_id, properties={"instance_uuid": "another", "image_type": "snapshot"})
        mine = Image(id="22222222-2222-2222-2222-222222222222", name="upload", status="queued",
                     owner=world.a.project_id, properties={"instance_uuid": world.server_id})
        s.add_all([other, mine])
    assert client.post(url, json={"shelve": None}, headers=member).status_code == 202
    image_id = runs[0]["image_id"]
    with write_session() as s:
        s.query(Instance).filter(Instance.uuid == world.server_id).one().task_state = "deleting"
    boot.finish_delete({"instance_uuid": world.server_id, "request_id": "req-delete", "action": "delete",
                        "host": "h1", "task_state": "deleting"})
    with read_session() as s:
        assert s.get(Image, image_id) is None
        assert s.get(Image, "11111111-1111-1111-1111-111111111111") is not None
        assert s.get(Image, "22222222-2222-2222-2222-222222222222") is not None
