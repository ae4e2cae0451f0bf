"""Issue 28: answers as Nova gives them, each found by an unmodified OpenStack client (in-process app and
conductor; tests/unit/inprocess.py)."""
from __future__ import annotations

import pytest

from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)

V21 = {"OpenStack-API-Version": "compute 2.1"}


def _flavor(client, admin, body: dict, headers: dict = COMPUTE):
    return client.post("/v2.1/flavors", json={"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": 1, **body}},
                       headers={**admin.headers, **headers})


@pytest.mark.parametrize("given, stored", [(42, "42"), (7.5, "7.5"), ("abc", "abc")])
def test_flavor_id_may_be_a_number_and_is_stored_as_a_string(client, admin, inprocess_conductor, given, stored):
    resp = _flavor(client, admin, {"id": given})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["flavor"]["id"] == stored
    assert client.get(f"/v2.1/flavors/{stored}", headers=admin.headers).get_json()["flavor"]["id"] == stored


@pytest.mark.parametrize("given", [True, [1], {"a": 1}, " x", ""])
def test_flavor_id_of_another_type_or_pattern_is_a_400(client, admin, inprocess_conductor, given):
    resp = _flavor(client, admin, {"id": given})
    assert resp.status_code == 400, resp.get_json()
    assert "badRequest" in resp.get_json()


def test_flavor_id_null_or_zero_gets_a_generated_id(client, admin, inprocess_conductor):
    for given in (None, 0):
        resp = _flavor(client, admin, {"id": given, "name": f"f{given}"})
        assert resp.status_code == 200, resp.get_json()
        assert len(resp.get_json()["flavor"]["id"]) == 36


def _v(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


def _set_instance(uuid: str, **values: object) -> None:
    from sqlalchemy import select

    from core.db import write_session
    from core.models import Instance
    with write_session() as s:
        inst = s.scalars(select(Instance).where(Instance.uuid == uuid)).one()
        for key, value in values.items():
            setattr(inst, key, value)


# --- item 4: PUT /servers/{id} and rebuild show the extended attributes only from 2.75 ---------------------------

EXTENDED = {"OS-EXT-AZ:availability_zone", "config_drive", "key_name", "OS-SRV-USG:launched_at",
            "OS-SRV-USG:terminated_at", "OS-EXT-STS:task_state", "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state",
            "os-extended-volumes:volumes_attached", "OS-EXT-SRV-ATTR:host", "host_status"}


@pytest.mark.parametrize("who", ["a", "admin"])
def test_update_answers_extended_attributes_only_from_2_75(client, world: World, who):
    headers = getattr(world, who).headers
    url = f"/v2.1/servers/{world.server_id}"
    for version, extended in (("2.1", False), ("2.74", False), ("2.75", True)):
        resp = client.put(url, json={"server": {"name": f"n-{version}"}}, headers={**headers, **_v(version)})
        assert resp.status_code == 200, resp.get_json()
        server = resp.get_json()["server"]
        shown = EXTENDED & set(server)
        if extended:
            assert {"OS-EXT-STS:vm_state", "key_name", "config_drive"} <= shown
            assert ("OS-EXT-SRV-ATTR:host" in shown) == (who == "admin")
        else:
            assert shown == set(), (version, shown)
        assert server["name"] == f"n-{version}"


def test_rebuild_answers_user_data_from_2_57_and_key_name_from_2_54(client, world: World):
    _set_instance(world.server_id, vm_state="active", task_state=None, host="h1", node="h1")
    url = f"/v2.1/servers/{world.server_id}/action"
    rebuild = {"rebuild": {"imageRef": world.image_id}}
    old = client.post(url, json=rebuild, headers={**world.a.headers, **_v("2.53")})
    assert old.status_code == 202, old.get_json()
    assert not {"user_data", "key_name"} & set(old.get_json()["server"])
    _set_instance(world.server_id, task_state=None)
    mid = client.post(url, json=rebuild, headers={**world.a.headers, **_v("2.56")})
    assert "key_name" in mid.get_json()["server"] and "user_data" not in mid.get_json()["server"]
    _set_instance(world.server_id, task_state=None)
    new = client.post(url, json={"rebuild": {"imageRef": world.image_id, "user_data": "aGVsbG8="}},
                      headers={**world.admin.headers, **_v("2.75")})
    assert new.status_code == 202, new.get_json()
    server = new.get_json()["server"]
    assert server["user_data"] == "aGVsbG8=" and "OS-EXT-SRV-ATTR:user_data" not in server
    assert "OS-EXT-STS:vm_state" in server


# --- item 11: aggregate ids and the tenant_id filter, as Nova reads them -------------------------------------------

@pytest.mark.parametrize("method, suffix, body", [
    ("get", "", None), ("delete", "", None), ("put", "", {"aggregate": {"name": "x"}}),
    ("post", "/action", {"add_host": {"host": "nowhere"}})])
@pytest.mark.parametrize("agg_id", ["-1", "987654", "99999999999999999999"])
def test_unknown_aggregate_id_is_a_404(client, admin, inprocess_conductor, method, suffix, body, agg_id):
    resp = getattr(client, method)(f"/v2.1/os-aggregates/{agg_id}{suffix}", json=body, headers=admin.headers)
    assert resp.status_code == 404, resp.get_json()
    assert "itemNotFound" in resp.get_json()


def test_aggregate_id_that_is_no_integer_is_a_400(client, admin, inprocess_conductor):
    resp = client.get("/v2.1/os-aggregates/abc", headers=admin.headers)
    assert resp.status_code == 400
    assert resp.get_json()["badRequest"]["message"] == "Invalid input received: id must be an integer"


def test_admin_tenant_id_filter_is_ignored_without_all_tenants(client, world: World):
    def listed(query: str) -> list[str]:
        resp = client.get(f"/v2.1/servers{query}", headers=world.admin.headers)
        assert resp.status_code == 200, resp.get_json()
        return [srv["id"] for srv in resp.get_json()["servers"]]
    project = world.a.project_id
    assert listed(f"?tenant_id={project}") == []  # the admin's own project has no server
    assert listed(f"?project_id={project}") == []
    assert listed(f"?all_tenants=1&tenant_id={project}") == [world.server_id]
    assert listed(f"?all_tenants=1&project_id={project}") == [world.server_id]
    assert listed(f"?all_tenants=1&tenant_id={world.b.project_id}") == []
