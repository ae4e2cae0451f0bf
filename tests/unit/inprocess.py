"""Run the API's conductor calls in-process (no broker): for API tests that need real writes but no workers.

``rpc.call`` runs the conductor task body synchronously in the test process; canvases the conductor starts
(boot, actions) are recorded instead of sent, so instances stay in their first state.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest


def compute_version(version: str) -> dict[str, str]:
    """The header asking for compute API microversion ``version``."""
    return {"OpenStack-API-Version": f"compute {version}"}


def set_instance(uuid: str, **values: object) -> None:
    """Write instance columns directly, to put a server into a state no API call reaches quickly."""
    from sqlalchemy import select

    from core.db import write_session
    from core.models import Instance
    with write_session() as s:
        inst = s.scalars(select(Instance).where(Instance.uuid == uuid)).one()
        for key, value in values.items():
            setattr(inst, key, value)


class _DroppedResult:
    id = "dropped"

    def get(self, *args: Any, **kwargs: Any) -> None:
        return None

    def forget(self) -> None:
        pass


@pytest.fixture
def inprocess_conductor(monkeypatch) -> list[str]:
    return patch_conductor(monkeypatch)


def patch_conductor(monkeypatch) -> list[str]:
    """Patch rpc.call to run conductor tasks in-process; returns the names of canvas tasks that were dropped."""
    from kombu.utils import json as kombu_json

    from tasks.messaging import plain_json, rpc
    from core.errors import ApiError
    from tasks.messaging.celery_app import celery

    celery.loader.import_default_modules()  # registers every task module the app includes

    sent: list[str] = []

    def call(task_name: str, *args: Any, argsrepr: str | None = None, timeout: float | None = None,
             queue: str = "conductor") -> Any:
        plain_json.check(args)  # as rpc.call does; the task then gets what a worker would decode
        args = tuple(kombu_json.loads(kombu_json.dumps(args)))
        if not task_name.startswith("stratus.conductor."):
            raise ApiError(503, f"{task_name} needs a compute worker, which in-process tests do not run.")
        reply = celery.tasks[task_name](*args)
        if isinstance(reply, dict) and "error" in reply:
            raise ApiError(int(reply["error"]["code"]), reply["error"]["message"],
                           error_code=reply["error"].get("error_code"))
        return reply["ok"]

    def send_task(name: str, *args: Any, **kwargs: Any) -> _DroppedResult:
        kombu_json.dumps(kwargs.get("args") or ())  # a canvas the broker could not carry fails here too
        sent.append(name)
        return _DroppedResult()

    monkeypatch.setattr(rpc, "call", call)
    monkeypatch.setattr(celery, "send_task", send_task)
    return sent


COMPUTE = {"OpenStack-API-Version": "compute 2.96"}
PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0RzSQzD4L0CvvS0eG5Yc2tmIhE6rx4Zg8s0cC4d6p stratus@test")


@dataclasses.dataclass
class World:
    """Two projects with members, a reader in A, and one resource of each kind owned by A."""
    admin: Any
    a: Any
    b: Any
    reader: Any
    flavor_id: str
    image_id: str
    server_id: str
    keypair: str


def _ok(resp, code: int) -> dict:
    assert resp.status_code == code, resp.get_data(as_text=True)
    return resp.get_json() if resp.data else {}


@pytest.fixture
def world(client, admin, make_user, inprocess_conductor) -> World:
    return build_world(client, admin, make_user)


def build_world(client, admin, make_user) -> World:
    """A's resources (the conductor must run in-process: ``patch_conductor``)."""
    a = make_user("alice", "proj-a", "member")
    b = make_user("bob", "proj-b", "member")
    reader = make_user("rita", "proj-a", "reader")
    flavor = _ok(client.post("/v2.1/flavors", json={"flavor": {"name": "tiny", "ram": 64, "vcpus": 1, "disk": 1,
                                                                "id": "tiny"}},
                             headers={**admin.headers, **COMPUTE}), 200)["flavor"]
    image = _ok(client.post("/image/v2/images", json={"name": "a-img", "disk_format": "raw",
                                                      "container_format": "bare", "visibility": "private"},
                            headers=a.headers), 201)
    _ok(client.put(f"/image/v2/images/{image['id']}/file", data=b"x" * 512,
                   headers={**a.headers, "Content-Type": "application/octet-stream"}), 204)
    server = _ok(client.post("/v2.1/servers", json={"server": {
        "name": "a-vm", "imageRef": image["id"], "flavorRef": flavor["id"], "networks": "none"}},
        headers={**a.headers, **COMPUTE}), 202)["server"]
    _ok(client.post("/v2.1/os-keypairs", json={"keypair": {"name": "a-key", "public_key": PUBLIC_KEY}},
                    headers={**a.headers, **COMPUTE}), 201)
    return World(admin, a, b, reader, flavor["id"], image["id"], server["id"], "a-key")
