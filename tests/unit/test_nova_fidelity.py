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
