"""Nova's (2025.1) meanings of Keystone's manager role where Stratus has the rule: a project manager may cold- or
live-migrate its project's servers without naming a host; naming one stays an admin's."""
from __future__ import annotations

from tests.unit.inprocess import inprocess_conductor, world  # noqa: F401 (fixtures)
from tests.unit.test_live_migration import canvases, placed  # noqa: F401 (fixtures)

V = {"OpenStack-API-Version": "compute 2.96"}


def _action(client, world, cred, body):
    return client.post(f"/v2.1/servers/{world.server_id}/action", json=body, headers={**cred.headers, **V})


def test_a_manager_moves_its_servers_but_picks_no_host(client, placed, canvases, make_user):
    manager = make_user("mona", "proj-a", "manager")
    live = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    assert _action(client, placed, placed.a, live).status_code == 403  # a member may not
    assert _action(client, placed, placed.a, {"migrate": None}).status_code == 403
    assert _action(client, placed, manager, {"os-migrateLive": {"host": "h2", "block_migration": "auto"}}) \
        .status_code == 403
    assert _action(client, placed, manager, {"migrate": {"host": "h2"}}).status_code == 403
    assert canvases == []
    other = make_user("otto", "proj-b", "manager")
    assert _action(client, placed, other, live).status_code == 404  # another project's server
    resp = _action(client, placed, manager, live)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert [name for name, _ in canvases] == ["stratus.conductor.live_migration_prechecks"]
