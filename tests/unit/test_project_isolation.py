"""Project isolation on every route: project B's member cannot see or touch project A's resources, and a reader
cannot write anywhere. Routes are taken from url_map, so routes added later are covered automatically."""
from __future__ import annotations

import re
import uuid

from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401  (fixtures)

_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
# Path arguments that name something owned by a project or a user (flavors, networks, roles... are shared).
OWNED = {"server_id", "image_id", "name", "project_id", "user_id", "request_id"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Bodies that pass validation, so a refusal comes from isolation and not from a malformed request.
BODIES = {
    "servers.server_action": [{"os-stop": None}, {"reboot": {"type": "HARD"}}, {"lock": None},
                              {"os-getConsoleOutput": {}}, {"os-getVNCConsole": {"type": "novnc"}}],
    "servers.update_server": [{"server": {"name": "stolen"}}],
    "consoles.remote_consoles": [{"remote_console": {"protocol": "vnc", "type": "novnc"}}],
    # action dispatchers check the named rule of the action they dispatch (malformed bodies are a 400 first)
    "flavor_access.flavor_action": [{"addTenantAccess": {"tenant": "x"}}],
    "aggregates.aggregate_action": [{"add_host": {"host": "x"}}],
    "image.update_image": [[{"op": "replace", "path": "/name", "value": "stolen"}]],
    "image_members.add_member": [{"member": "x"}],
    "image_members.update_member": [{"status": "accepted"}],
    "image_import.import_image": [{"method": {"name": "glance-direct"}}],
    "identity_projects.update_project": [{"project": {"name": "stolen"}}],
    "identity_users.update_user": [{"user": {"name": "stolen"}}],
    "identity_users.change_password": [{"user": {"password": "new-pass-123", "original_password": "pw-xxxxxxxx"}}],
    "images.update_metadata": [{"metadata": {"k": "v"}}],
    "images.replace_metadata": [{"metadata": {"k": "v"}}],
    "images.set_metadata_item": [{"meta": {"x": "v"}}],
}
# APIs Nova removed at a microversion: asked at the last one that has them (later, every answer is a 404).
LAST_VERSION = {"images": "2.35", "hosts": "2.42"}
# Writes a reader may do, as in Nova/Keystone: key pairs are the user's own (os-keypairs policy is admin-or-owner),
# tokens are issued to anyone and revoked by their holder.
READER_MAY_WRITE = {"keypairs.create_keypair", "keypairs.delete_keypair", "identity_tokens.issue_token",
                    "identity_tokens.revoke_token"}

# Reads that name a project but show nothing of it, open to anyone authenticated as in Nova.
SHARED_READS = {"quotas.show_quota_set_defaults"}


def _routes(app):
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: r.rule)


def _request(client, cred, rule, method: str, ids: dict[str, str], body):
    url = _ARG.sub(lambda m: ids.get(m.group(1), "x"), rule.rule)
    headers = {**cred.headers, **COMPUTE}
    last = LAST_VERSION.get(rule.endpoint.split(".")[0])
    if last:
        headers["OpenStack-API-Version"] = f"compute {last}"
    if rule.endpoint == "image.update_image":
        return client.open(url, method=method, data=__import__("json").dumps(body), content_type=PATCH_TYPE,
                           headers=headers)
    if rule.endpoint == "image.upload_image":
        return client.open(url, method=method, data=b"z" * 64, content_type="application/octet-stream",
                           headers=headers)
    return client.open(url, method=method, json=body, headers=headers)


def _a_ids(client, w: World) -> dict[str, str]:
    actions = client.get(f"/v2.1/servers/{w.server_id}/os-instance-actions", headers={**w.a.headers, **COMPUTE})
    request_id = actions.get_json()["instanceActions"][0]["request_id"]
    return {"server_id": w.server_id, "image_id": w.image_id, "name": w.keypair, "project_id": w.a.project_id,
            "user_id": w.a.user_id, "request_id": request_id, "flavor_id": w.flavor_id, "role_id": "member",
            "domain_id": "default", "network_id": str(uuid.uuid4()), "hypervisor_id": "1",
            "service_id": str(uuid.uuid4())}


def _missing_ids(ids: dict[str, str]) -> dict[str, str]:
    """Ids of the same kinds that exist nowhere."""
    return {**ids, "server_id": str(uuid.uuid4()), "image_id": str(uuid.uuid4()), "name": "no-such-key",
            "project_id": uuid.uuid4().hex, "user_id": uuid.uuid4().hex, "request_id": "req-" + str(uuid.uuid4())}


def test_other_projects_member_gets_404_or_403_for_every_owned_resource(app, client, world):
    """B's answer for A's resource is a refusal and says no more than the answer for a resource that does not
    exist (Nova's 404 for another project's server), except Keystone's 403 for another project's records."""
    ids = _a_ids(client, world)
    missing = _missing_ids(ids)
    checked = 0
    for rule in _routes(app):
        if not rule.arguments & OWNED or rule.endpoint in SHARED_READS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}, key=lambda m: m == "DELETE"):
            for body in BODIES.get(rule.endpoint, [{}]):
                theirs = _request(client, world.b, rule, method, ids, body)
                nothing = _request(client, world.b, rule, method, missing, body)
                what = f"{method} {rule.rule} {body} -> {theirs.status_code} {theirs.get_data(as_text=True)[:200]}"
                assert theirs.status_code in (400, 403, 404), what
                if rule.rule.startswith("/identity"):
                    assert theirs.status_code in (403, 404), what
                else:
                    assert theirs.status_code == nothing.status_code, f"{what}; missing -> {nothing.status_code}"
                checked += 1
    assert checked >= 20
    # A's resources are intact and still A's.
    server = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.a.headers, **COMPUTE}).get_json()
    assert server["server"]["name"] == "a-vm" and server["server"]["status"] == "BUILD"
    assert server["server"]["locked"] is False
    image = client.get(f"/image/v2/images/{world.image_id}", headers=world.a.headers).get_json()
    assert image["name"] == "a-img"
    assert client.get("/v2.1/os-keypairs/a-key", headers=world.a.headers).status_code == 200


def test_lists_show_only_the_callers_project(client, world):
    b = {**world.b.headers, **COMPUTE}
    for url, key in (("/v2.1/servers", "servers"), ("/v2.1/servers/detail", "servers"),
                     ("/v2.1/os-keypairs", "keypairs")):
        assert client.get(url, headers=b).get_json()[key] == []
    assert client.get("/v2.1/servers?all_tenants=1", headers=b).get_json()["servers"] == []
    assert client.get(f"/v2.1/servers?project_id={world.a.project_id}", headers=b).get_json()["servers"] == []
    images = client.get("/image/v2/images", headers=world.b.headers).get_json()["images"]
    assert world.image_id not in {i["id"] for i in images}


def test_reader_cannot_write_anywhere(app, client, world):
    """Every write method of every route, with the reader's own project's ids and valid bodies: 403."""
    ids = _a_ids(client, world)
    checked = 0
    for rule in _routes(app):
        if rule.endpoint in READER_MAY_WRITE:
            continue
        for method in sorted(set(WRITES) & rule.methods, key=lambda m: m == "DELETE"):
            for body in BODIES.get(rule.endpoint, [{}]):
                resp = _request(client, world.reader, rule, method, ids, body)
                assert resp.status_code == 403, \
                    f"reader {method} {rule.rule} {body} -> {resp.status_code} {resp.get_data(as_text=True)[:200]}"
                checked += 1
    assert checked >= 25
    server = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.a.headers, **COMPUTE}).get_json()
    assert server["server"]["name"] == "a-vm"
