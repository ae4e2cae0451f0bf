"""Every compute route and every server action has a Nova policy name, and the names are what the policy file
overrides (the action dispatcher checks the action's rule for the instance's project)."""
from __future__ import annotations

import pytest

from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)


def _rules_of(app) -> dict[str, tuple[str, ...]]:
    from app.policy import view_rules
    out = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.rule.startswith("/v2.1") and not getattr(view, "policy_public", False):
            out[f"{sorted(rule.methods - {'HEAD', 'OPTIONS'})} {rule.rule}"] = view_rules(rule.endpoint, view)
    return out


def test_every_compute_route_and_server_action_has_a_registered_nova_rule(app):
    from app.compute.actions import ACTIONS
    from app.policy import DEFAULTS
    from app.policy_names import ACTION_RULES

    routes = _rules_of(app)
    assert len(routes) > 60
    unnamed = {route: names for route, names in routes.items()
               if not names or any(n not in DEFAULTS or not n.startswith(("os_compute_api:", "compute:"))
                                   for n in names)}
    assert not unnamed, f"routes without a registered Nova policy name: {unnamed}"
    missing = sorted(a for a in ACTIONS if a not in ACTION_RULES or ACTION_RULES[a][0] not in DEFAULTS)
    assert not missing, f"server actions without a Nova policy name: {missing}"
    assert "os_compute_api:os-pause-server:pause" in routes["['POST'] /v2.1/servers/<server_id>/action"]


def test_policy_dump_lists_action_and_sub_rules(app):
    from app.policy import sample_file
    dump = sample_file()
    for line in ("os_compute_api:os-pause-server:pause: rule:project_member_or_admin",
                 "os_compute_api:os-migrate-server:migrate_live: rule:project_manager_or_admin",
                 "os_compute_api:os-migrate-server:migrate_live:host: rule:admin_api",
                 "os_compute_api:os-shelve:shelve_offload: rule:admin_api",
                 "os_compute_api:os-server-tags:update: rule:project_member_or_admin",
                 "os_compute_api:server-metadata:create: rule:project_member_or_admin",
                 "os_compute_api:servers:create_image: rule:project_member_or_admin",
                 "os_compute_api:os-quota-sets:update: rule:admin_api",
                 "os_compute_api:os-keypairs:index: rule:context_is_admin or user_id:%(user_id)s"):
        assert line in dump


@pytest.fixture
def pause_admin_only(tmp_path, monkeypatch):
    f = tmp_path / "policy.yaml"
    f.write_text('"os_compute_api:os-pause-server:pause": "role:admin"\n'
                 '"os_compute_api:os-server-tags:update": "role:admin"\n'
                 '"os_compute_api:servers:reboot": "role:reader and project_id:%(project_id)s"\n')
    monkeypatch.setenv("STRATUS_POLICY_FILE", str(f))


def _make_active(server_id: str) -> None:
    from core.db import write_session
    from core.models import Instance
    with write_session() as s:
        inst = s.query(Instance).filter(Instance.uuid == server_id).one()
        inst.vm_state, inst.task_state, inst.host = "active", None, "h1"


def test_policy_file_overrides_a_server_actions_rule(pause_admin_only, client, world: World):
    _make_active(world.server_id)
    url = f"/v2.1/servers/{world.server_id}/action"
    resp = client.post(url, json={"pause": None}, headers={**world.a.headers, **COMPUTE})
    assert resp.status_code == 403, resp.get_json()
    assert "os_compute_api:os-pause-server:pause" in resp.get_json()["forbidden"]["message"]
    resp = client.post(url, json={"pause": None}, headers={**world.admin.headers, **COMPUTE})
    assert resp.status_code == 202, resp.get_json()
    # other actions keep their defaults; an override may also widen a rule (a reader may reboot), and the
    # dispatcher's target is the instance's project (project B's member still gets 404)
    _make_active(world.server_id)
    assert client.post(url, json={"reboot": {"type": "SOFT"}},
                       headers={**world.reader.headers, **COMPUTE}).status_code == 202
    assert client.post(url, json={"reboot": {"type": "SOFT"}},
                       headers={**world.b.headers, **COMPUTE}).status_code == 404
    _make_active(world.server_id)
    assert client.post(url, json={"os-stop": None}, headers={**world.a.headers, **COMPUTE}).status_code == 202
    # named rules of sub-resources too
    tag_url = f"/v2.1/servers/{world.server_id}/tags/blue"
    assert client.put(tag_url, headers={**world.a.headers, **COMPUTE}).status_code == 403
    assert client.put(tag_url, headers={**world.admin.headers, **COMPUTE}).status_code == 201


def test_default_action_rules_member_and_admin(client, world: World):
    _make_active(world.server_id)
    url = f"/v2.1/servers/{world.server_id}/action"
    member = {**world.a.headers, **COMPUTE}
    resp = client.post(url, json={"os-migrateLive": {"host": None, "block_migration": "auto"}}, headers=member)
    assert resp.status_code == 403
    assert "os_compute_api:os-migrate-server:migrate_live" in resp.get_json()["forbidden"]["message"]
    assert client.post(url, json={"evacuate": {}}, headers=member).status_code == 403
    assert client.post(url, json={"shelveOffload": None}, headers=member).status_code == 403
    assert client.post(url, json={"pause": None}, headers={**world.reader.headers, **COMPUTE}).status_code == 403
    assert client.post(url, json={"no-such": None}, headers=member).status_code == 400
    assert client.post(url, json={"pause": None}, headers=member).status_code == 202
