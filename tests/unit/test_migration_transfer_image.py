"""The hidden image a cold migration's disk travels in between hosts that share no disk (tasks/conductor/transfer.py):
made by the conductor with the migration only for a driver that moves disks through the Image API and only to
another host, private to the service project, uploadable by the compute hosts' service credential, invisible to
tenants, and deleted when the move ends (destination finished, failure, confirm, revert). In-process API and
conductor; compute steps captured, not run; the compute's Image API client talks to the in-process app."""
from __future__ import annotations

import hashlib
import io

import pytest
from sqlalchemy import select

from core.power_state import PowerState
from tests.unit.image_api import make_service_user
from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_same_host_resize import _act, _add_host, _place, big, same_host, started  # noqa: F401

DISK = b"QFI\xfb" + b"migrated disk " * 1000


@pytest.fixture
def through_images(monkeypatch):
    """The compute driver moves disks through the Image API (libvirt's capability; the stack here is fake's)."""
    from tasks.conductor import transfer
    monkeypatch.setattr(transfer, "capability", lambda driver, key: key == "moves_disk_through_image_api")


def _images() -> dict[str, object]:
    from core.db import read_session
    from core.models import Image
    with read_session() as s:
        return {i.id: i for i in s.scalars(select(Image))}


def _two_hosts(world) -> None:
    from core.db import write_session
    make_service_user()
    _place(world, "h1", 4096)
    with write_session() as s:
        _add_host(s, "h2", 4096)


def _migrate(client, world):
    return client.post(f"/v2.1/servers/{world.server_id}/action", json={"migrate": None},
                       headers={**world.admin.headers, **COMPUTE})


def test_the_transfer_image_is_hidden_uploadable_by_the_service_and_dropped_at_the_end(
        client, world, big, same_host, started, through_images):
    from core import image_store
    from core.models import Project
    from core.db import read_session
    from tasks import image_service
    from tasks.conductor import moves
    _two_hosts(world)
    assert _migrate(client, world).status_code == 202
    ctx = started[-1]
    tid = ctx["transfer_image_id"]
    assert ctx["ops"] == [["resize_source", "h1"], ["resize_dest", "h2"]] and tid
    img = _images()[tid]
    with read_session() as s:
        service_project = s.scalar(select(Project.id).where(Project.name == "service"))
    assert (img.status, img.visibility, img.owner) == ("queued", "private", service_project)
    assert img.properties == {"image_type": "migration", "instance_uuid": world.server_id,
                              "migration_uuid": ctx["migration_uuid"]}

    # tenants neither list nor read it, not even the server's owner
    for user in (world.a, world.b):
        assert client.get(f"/image/v2/images/{tid}", headers=user.headers).status_code == 404
        listed = client.get("/image/v2/images", headers=user.headers).get_json()["images"]
        assert tid not in {i["id"] for i in listed}
        r = client.put(f"/image/v2/images/{tid}/file", data=b"x", headers={
            **user.headers, "Content-Type": "application/octet-stream"})
        assert r.status_code == 404

    # the source host's service credential uploads the disk; the destination's sees it active, with checksums
    svc = image_service.client()
    assert svc.upload(tid, io.BytesIO(DISK)) == 204
    meta = svc.show(tid)
    assert meta["status"] == "active" and meta["checksum"] == hashlib.md5(DISK).hexdigest()
    assert b"".join(svc.download(tid)) == DISK

    # the destination finished: the image and its data go
    moves.finish_move({**ctx, "power_state": PowerState.RUNNING})
    assert tid not in _images() and not image_store.path_for(tid).exists()
    assert svc.upload(tid, io.BytesIO(DISK)) == 404


def test_a_failed_move_drops_the_transfer_image(client, world, big, same_host, started, through_images):
    from tasks.conductor import moves
    _two_hosts(world)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    ctx = started[-1]
    assert ctx["dest"] == "h2" and ctx["transfer_image_id"] in _images()
    moves.move_failed(ctx, "boom", "")
    assert ctx["transfer_image_id"] not in _images()


@pytest.mark.parametrize("end", ["confirmResize", "revertResize"])
def test_confirm_and_revert_drop_a_transfer_image_left_over(client, world, big, same_host, started, through_images,
                                                            end):
    """finish_move drops it; were that lost (the conductor died after the destination's step), the end of the
    move still does."""
    from tasks.conductor import moves
    _two_hosts(world)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    ctx = started[-1]
    moves.finish_move({**ctx, "power_state": PowerState.RUNNING, "transfer_image_id": None})
    assert ctx["transfer_image_id"] in _images()
    r = _act(client, world, {end: None})
    assert r.status_code in (202, 204), r.get_data(as_text=True)
    assert ctx["transfer_image_id"] not in _images()


def test_no_transfer_image_on_the_same_host_or_for_drivers_that_share_disks(client, world, big, same_host, started,
                                                                           through_images):
    from drivers import capability
    _place(world, "h1", 4096)
    same_host(True)
    assert _act(client, world, {"resize": {"flavorRef": big}}).status_code == 202
    assert started[-1]["dest"] == "h1" and started[-1]["transfer_image_id"] is None
    assert not any((i.properties or {}).get("image_type") == "migration" for i in _images().values())
    assert not capability("fake", "moves_disk_through_image_api")  # fake hosts share their state: no image
