"""GET /servers/detail sends the same number of SQL statements whatever the number of servers (no N+1).

In-process (Flask test client on a fresh SQLite DB, servers inserted directly by bench/seed.py): the statements
are counted with SQLAlchemy's before_cursor_execute event on the app's engine. Every server has a fixed IP, a
host with a compute service, metadata and a flavor snapshot; every 10th is in ERROR with faults, so each part of
the rendering that reads related rows (faults, host status, addresses) is exercised.
"""
from __future__ import annotations

import pytest

from bench.api_reads import app_on, count_statements
from bench.seed import seed_servers


@pytest.fixture
def cloud(tmp_path):
    with app_on("", tmp_path / "state") as ctx:
        yield ctx


def _statements(client, headers, path) -> tuple[int, int, list[str]]:
    with count_statements() as stmts:
        resp = client.get(path, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return len(resp.get_json()["servers"]), len(stmts), list(stmts)


@pytest.mark.parametrize("microversion", ["2.1", "2.96"])
def test_servers_detail_statement_count_is_constant(cloud, microversion):
    from core import db
    _app, client, headers, project_id, user_id = cloud
    headers = {**headers, "X-OpenStack-Nova-API-Version": microversion}
    path = "/v2.1/servers/detail?limit=1000"
    counts = {}
    have = 0
    for total in (10, 100, 400):
        with db.write_session() as s:
            seed_servers(s, project_id, user_id, total - have, hosts=min(total, 25), start=have)
        have = total
        returned, n, stmts = _statements(client, headers, path)
        assert returned == total
        counts[total] = (n, stmts)
    sizes = {k: v[0] for k, v in counts.items()}
    assert len(set(sizes.values())) == 1, (
        f"SQL statements per GET /servers/detail grow with the number of servers: {sizes}\n"
        "statements at 400 servers:\n" + "\n".join(s[:200] for s in counts[400][1]))


def test_servers_list_and_paging_statement_count_is_constant(cloud):
    from core import db
    _app, client, headers, project_id, user_id = cloud
    with db.write_session() as s:
        uuids = seed_servers(s, project_id, user_id, 50)
    small = _statements(client, headers, "/v2.1/servers?limit=5")[1]
    with db.write_session() as s:
        seed_servers(s, project_id, user_id, 300, start=50)
    large = _statements(client, headers, "/v2.1/servers?limit=300")[1]
    assert small == large
    # A marker page costs one more lookup (the marker row; today in its own session, so BEGIN + SELECT on
    # SQLite), not one per server.
    paged = _statements(client, headers, f"/v2.1/servers/detail?limit=100&marker={uuids[10]}")
    first = _statements(client, headers, "/v2.1/servers/detail?limit=100")
    assert paged[1] <= first[1] + 2, paged[2]


@pytest.mark.parametrize("microversion", ["2.1", "2.47", "2.96"])
def test_servers_detail_bodies_equal_their_show(cloud, microversion):
    """A list renders rows read as named tuples, a show renders the ORM object: both give the same body (show
    adds only server_groups, from 2.71), as admin and as a project member (no host fields, no fault details)."""
    from core import db
    from app.identity import service
    _app, client, headers, project_id, user_id = cloud
    with db.write_session() as s:
        uuids = seed_servers(s, project_id, user_id, 20, hosts=3)
        member = service.ensure_user(s, "member-1", "secret-1")
        service.grant(s, member.id, project_id, service.ensure_role(s, "member").id)
    r = client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "member-1", "domain": {"name": "Default"}, "password": "secret-1"}}},
        "scope": {"project": {"id": project_id}}}})
    assert r.status_code == 201, r.get_json()
    for who in (headers, {"X-Auth-Token": r.headers["X-Subject-Token"]}):
        hdrs = {**who, "X-OpenStack-Nova-API-Version": microversion}
        listed = client.get("/v2.1/servers/detail", headers=hdrs).get_json()["servers"]
        assert sorted(b["id"] for b in listed) == sorted(uuids)
        assert any("fault" in b for b in listed)
        for body in listed:
            shown = client.get(f"/v2.1/servers/{body['id']}", headers=hdrs).get_json()["server"]
            shown.pop("server_groups", None)
            assert body == shown
