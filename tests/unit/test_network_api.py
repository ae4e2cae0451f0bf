"""Networking API v2.0 subset in-process: version documents, extensions, the built-in network and subnet, ports
made of the servers' fixed IP rows (filters, fields, sorting, pagination), quotas, Neutron's error bodies and
policy (admin sees every port, a member or reader its project's; writes as Neutron refuses them), the catalog
entry, and servers booted onto the network by id (an unknown network is Nova's 400)."""
from __future__ import annotations

import uuid

import pytest

from tests.unit.inprocess import COMPUTE, World, _ok, inprocess_conductor, world  # noqa: F401  (fixtures)

N = "/networking/v2.0"


def _boot(client, cred, image_id: str, flavor_id: str, name: str, networks: object = "auto") -> dict:
    resp = client.post("/v2.1/servers", json={"server": {"name": name, "imageRef": image_id, "flavorRef": flavor_id,
                                                         "networks": networks}},
                       headers={**cred.headers, **COMPUTE})
    return resp


@pytest.fixture
def net(world: World, client):
    """World plus two servers of project A and one of B on the built-in network."""
    from core.network import builtin
    info = builtin()
    ids = []
    for cred, name in ((world.a, "a1"), (world.a, "a2")):
        ids.append(_ok(_boot(client, cred, world.image_id, world.flavor_id, name,
                             [{"uuid": info.id}]), 202)["server"]["id"])
    b_image = _ok(client.post("/image/v2/images", json={"name": "b-img", "disk_format": "raw",
                                                        "container_format": "bare", "visibility": "public"},
                              headers=world.admin.headers), 201)
    _ok(client.put(f"/image/v2/images/{b_image['id']}/file", data=b"x" * 512,
                   headers={**world.admin.headers, "Content-Type": "application/octet-stream"}), 204)
    ids.append(_ok(_boot(client, world.b, b_image["id"], world.flavor_id, "b1"), 202)["server"]["id"])
    return info, ids


def _ports(client, cred, query: str = "") -> list[dict]:
    return _ok(client.get(f"{N}/ports{query}", headers=cred.headers), 200)["ports"]


def test_root_is_public_and_names_v2(client):
    body = _ok(client.get("/networking/"), 200)
    assert body == {"versions": [{"id": "v2.0", "status": "CURRENT",
                                  "links": [{"rel": "self", "href": "http://localhost/networking/v2.0/"}]}]}
    assert client.get("/networking").status_code == 200


def test_v2_document_and_extensions_need_a_token(client, admin):
    resp = client.get(f"{N}/")
    assert resp.status_code == 401
    body = _ok(client.get(f"{N}/", headers=admin.headers), 200)
    assert [r["collection"] for r in body["resources"]] == ["networks", "subnets", "ports"]
    aliases = {e["alias"] for e in _ok(client.get(f"{N}/extensions", headers=admin.headers), 200)["extensions"]}
    assert {"quotas", "quota_details", "pagination", "sorting", "filter-validation", "external-net"} <= aliases
    assert not aliases & {"security-group", "router", "port-security", "binding", "dhcp_agent_scheduler"}
    ext = _ok(client.get(f"{N}/extensions/quotas", headers=admin.headers), 200)["extension"]
    assert ext["alias"] == "quotas" and ext["links"] == []
    resp = client.get(f"{N}/extensions/security-group", headers=admin.headers)
    assert resp.status_code == 404 and resp.get_json()["NeutronError"]["type"] == "HTTPNotFound"


def test_network_and_subnet_shapes(client, world: World):
    from core.network import builtin
    info = builtin()
    nets = _ok(client.get(f"{N}/networks", headers=world.reader.headers), 200)["networks"]
    assert len(nets) == 1
    netw = nets[0]
    assert netw["id"] == info.id and netw["name"] == "private" and netw["status"] == "ACTIVE"
    assert netw["shared"] is True and netw["router:external"] is False and netw["admin_state_up"] is True
    assert netw["subnets"] == [info.subnet_id] and netw["mtu"] == 1500
    assert netw["project_id"] == netw["tenant_id"] == world.admin.project_id
    assert _ok(client.get(f"{N}/networks/{info.id}", headers=world.b.headers), 200)["network"] == netw
    subnet = _ok(client.get(f"{N}/subnets/{info.subnet_id}", headers=world.a.headers), 200)["subnet"]
    assert subnet["cidr"] == "10.77.0.0/24" and subnet["gateway_ip"] == "10.77.0.1"
    assert subnet["allocation_pools"] == [{"start": "10.77.0.2", "end": "10.77.0.254"}]
    assert subnet["ip_version"] == 4 and subnet["enable_dhcp"] is False and subnet["dns_nameservers"] == []
    assert subnet["network_id"] == info.id
    assert _ok(client.get(f"{N}/subnets?network_id={info.id}", headers=world.a.headers), 200)["subnets"] == [subnet]
    # the id is stable: the same from every process and every call
    assert builtin().id == info.id and builtin().subnet_id == info.subnet_id


def test_network_filters_as_horizon_sends_them(client, world: World):
    from core.network import builtin
    info = builtin()
    h = world.a.headers
    assert len(_ok(client.get(f"{N}/networks?shared=True", headers=h), 200)["networks"]) == 1
    assert _ok(client.get(f"{N}/networks?shared=False&project_id={world.a.project_id}", headers=h),
               200)["networks"] == []
    assert _ok(client.get(f"{N}/networks?router:external=True", headers=h), 200)["networks"] == []
    assert len(_ok(client.get(f"{N}/networks?name=private&id={info.id}", headers=h), 200)["networks"]) == 1
    assert _ok(client.get(f"{N}/networks?name=other", headers=h), 200)["networks"] == []
    only = _ok(client.get(f"{N}/networks?fields=id&fields=name", headers=h), 200)["networks"]
    assert only == [{"id": info.id, "name": "private"}]
    resp = client.get(f"{N}/networks?colour=red", headers=h)
    assert resp.status_code == 400
    assert resp.get_json() == {"NeutronError": {"type": "HTTPBadRequest", "detail": "",
                                                "message": "[colour] is invalid attribute for filtering"}}


def test_unknown_items_are_neutron_404s(client, world: World):
    missing = str(uuid.uuid4())
    for kind, path in (("Network", "networks"), ("Subnet", "subnets"), ("Port", "ports")):
        resp = client.get(f"{N}/{path}/{missing}", headers=world.admin.headers)
        assert resp.status_code == 404
        assert resp.get_json() == {"NeutronError": {"type": f"{kind}NotFound", "detail": "",
                                                    "message": f"{kind} {missing} could not be found."}}
    resp = client.get(f"{N}/security-groups", headers=world.admin.headers)
    assert resp.status_code == 404 and "NeutronError" in resp.get_json()
    assert client.get(f"{N}/networks").status_code == 401


def test_ports_are_the_servers_fixed_ips(client, world: World, net):
    from core import db
    from core.models import FixedIP
    info, (a1, a2, b1) = net
    ports = _ports(client, world.admin)
    assert {p["device_id"] for p in ports} == {a1, a2, b1}
    with db.read_session() as s:
        rows = {r.instance_uuid: r for r in s.query(FixedIP)}
    port = next(p for p in ports if p["device_id"] == a1)
    row = rows[a1]
    assert port["id"] == row.port_id and port["mac_address"] == row.mac
    assert port["fixed_ips"] == [{"subnet_id": info.subnet_id, "ip_address": row.address}]
    assert port["network_id"] == info.id and port["device_owner"] == "compute:nova" and port["name"] == ""
    assert port["project_id"] == port["tenant_id"] == world.a.project_id and port["admin_state_up"] is True
    assert port["status"] == "DOWN"  # the in-process conductor ran no guest
    assert _ok(client.get(f"{N}/ports/{row.port_id}", headers=world.a.headers), 200)["port"] == port
    # the server's address is the port's
    server = _ok(client.get(f"/v2.1/servers/{a1}", headers={**world.a.headers, **COMPUTE}), 200)["server"]
    assert [a["addr"] for a in server["addresses"]["private"]] == [row.address]
    # the port goes with its server's address (the conductor's delete releases it) and with its live row
    from core.models import Instance
    from core.writes.networking import release_fixed_ips
    with db.write_session() as s:
        release_fixed_ips(s, a2)
        s.query(Instance).filter_by(uuid=b1).update({"deleted": 1})
    assert {p["device_id"] for p in _ports(client, world.admin)} == {a1}


def test_port_status_follows_the_guest(client, world: World, net):
    from core import db
    from core.models import Instance
    from core.power_state import PowerState
    _info, (a1, _a2, _b1) = net
    with db.write_session() as s:
        s.query(Instance).filter_by(uuid=a1).update({"power_state": PowerState.RUNNING})
    assert _ports(client, world.a, f"?device_id={a1}")[0]["status"] == "ACTIVE"
    assert _ports(client, world.a, "?status=ACTIVE")[0]["device_id"] == a1
    assert len(_ports(client, world.a, "?status=DOWN")) == 1


def test_port_visibility_by_project(client, world: World, net):
    _info, (a1, a2, b1) = net
    assert {p["device_id"] for p in _ports(client, world.a)} == {a1, a2}
    assert {p["device_id"] for p in _ports(client, world.reader)} == {a1, a2}
    assert {p["device_id"] for p in _ports(client, world.b)} == {b1}
    b_port = _ports(client, world.b)[0]["id"]
    resp = client.get(f"{N}/ports/{b_port}", headers=world.a.headers)
    assert resp.status_code == 404 and resp.get_json()["NeutronError"]["type"] == "PortNotFound"
    # another project's server named as a filter shows nothing, not an error
    assert _ports(client, world.a, f"?device_id={b1}") == []
    assert {p["device_id"] for p in _ports(client, world.admin, f"?project_id={world.b.project_id}")} == {b1}


def test_port_filters_the_cli_and_horizon_use(client, world: World, net):
    info, (a1, a2, _b1) = net
    ports = {p["device_id"]: p for p in _ports(client, world.a)}
    one = ports[a1]
    h = world.a
    assert [p["id"] for p in _ports(client, h, f"?device_id={a1}")] == [one["id"]]
    assert {p["device_id"] for p in _ports(client, h, f"?device_id={a1}&device_id={a2}")} == {a1, a2}
    assert [p["id"] for p in _ports(client, h, f"?id={one['id']}")] == [one["id"]]
    assert [p["id"] for p in _ports(client, h, f"?mac_address={one['mac_address']}")] == [one["id"]]
    address = one["fixed_ips"][0]["ip_address"]
    assert [p["id"] for p in _ports(client, h, f"?fixed_ips=ip_address%3D{address}")] == [one["id"]]
    assert len(_ports(client, h, f"?fixed_ips=subnet_id%3D{info.subnet_id}")) == 2
    assert _ports(client, h, "?fixed_ips=ip_address%3D10.99.0.9") == []
    assert len(_ports(client, h, f"?network_id={info.id}&device_owner=compute:nova")) == 2
    assert _ports(client, h, f"?network_id={uuid.uuid4()}") == []
    assert _ports(client, h, f"?fields=id&fields=device_id&device_id={a1}") == [{"id": one["id"], "device_id": a1}]
    resp = client.get(f"{N}/ports?fixed_ips=colour%3Dred", headers=h.headers)
    assert resp.status_code == 400 and resp.get_json()["NeutronError"]["type"] == "HTTPBadRequest"
    resp = client.get(f"{N}/ports?security_groups=x", headers=h.headers)
    assert resp.status_code == 400
    assert resp.get_json()["NeutronError"]["message"] == "[security_groups] is invalid attribute for filtering"


def test_ports_sorting_and_pagination(client, world: World, net):
    all_ports = _ports(client, world.admin)
    ids = sorted(p["id"] for p in all_ports)
    body = _ok(client.get(f"{N}/ports?limit=2", headers=world.admin.headers), 200)
    assert [p["id"] for p in body["ports"]] == ids[:2]
    rels = {link["rel"]: link["href"] for link in body["ports_links"]}
    assert set(rels) == {"next", "previous"} and f"marker={ids[1]}" in rels["next"]
    nxt = rels["next"].replace("http://localhost", "")
    body = _ok(client.get(nxt, headers=world.admin.headers), 200)
    assert [p["id"] for p in body["ports"]] == ids[2:3]
    assert [link["rel"] for link in body["ports_links"]] == ["previous"]  # a short page has no next
    body = _ok(client.get(f"{N}/ports?limit=2&marker={ids[2]}&page_reverse=True", headers=world.admin.headers), 200)
    assert [p["id"] for p in body["ports"]] == ids[:2]
    assert "ports_links" not in _ok(client.get(f"{N}/ports", headers=world.admin.headers), 200)
    by_mac = _ok(client.get(f"{N}/ports?sort_key=mac_address&sort_dir=desc", headers=world.admin.headers),
                 200)["ports"]
    assert [p["mac_address"] for p in by_mac] == sorted((p["mac_address"] for p in all_ports), reverse=True)
    for query, message in (("limit=-1", "Limit must be an integer 0 or greater and not '-1'"),
                           ("sort_key=id", "The number of sort_keys and sort_dirs must be same"),
                           ("sort_key=colour&sort_dir=asc", "['colour'] is invalid attribute for sort_keys")):
        resp = client.get(f"{N}/ports?{query}", headers=world.admin.headers)
        assert resp.status_code == 400 and resp.get_json()["NeutronError"]["message"] == message, query


def test_writes_as_neutron_refuses_them(client, world: World, net):
    from core.network import builtin
    info = builtin()
    # creates: admin-only networks and subnets (403 PolicyNotAuthorized), a member may ask for a port
    resp = client.post(f"{N}/networks", json={"network": {"name": "n2"}}, headers=world.a.headers)
    assert resp.status_code == 403
    assert resp.get_json() == {"NeutronError": {"type": "PolicyNotAuthorized", "detail": "",
                                                "message": "rule:create_network is disallowed by policy"}}
    assert client.post(f"{N}/subnets", json={}, headers=world.a.headers).status_code == 403
    resp = client.post(f"{N}/networks", json={"network": {"name": "n2"}}, headers=world.admin.headers)
    assert resp.status_code == 409 and resp.get_json()["NeutronError"]["type"] == "Conflict"
    assert "set by the configuration" in resp.get_json()["NeutronError"]["message"]
    # changing or deleting the network or its subnet: admin-only
    for method in ("put", "delete"):
        resp = getattr(client, method)(f"{N}/networks/{info.id}", json={"network": {"name": "x"}},
                                       headers=world.a.headers)
        assert resp.status_code == 403, resp.get_json()
        assert resp.get_json()["NeutronError"]["message"] == f"rule:{method.replace('put', 'update')}_network is " \
                                                             f"disallowed by policy"
    assert client.delete(f"{N}/subnets/{info.subnet_id}", headers=world.a.headers).status_code == 403
    assert client.delete(f"{N}/networks/{uuid.uuid4()}", headers=world.admin.headers).status_code == 404
    assert client.delete(f"{N}/networks/{info.id}", headers=world.admin.headers).status_code == 409
    # ports: a reader is refused, a member of the port's project is told Stratus does not do it
    port = _ports(client, world.a)[0]["id"]
    resp = client.put(f"{N}/ports/{port}", json={"port": {"name": "p"}}, headers=world.reader.headers)
    assert resp.status_code == 403
    assert resp.get_json()["NeutronError"]["message"] == "rule:update_port is disallowed by policy"
    assert client.post(f"{N}/ports", json={"port": {}}, headers=world.reader.headers).status_code == 403
    assert client.post(f"{N}/ports", json={"port": {}}, headers=world.a.headers).status_code == 409
    assert client.delete(f"{N}/ports/{port}", headers=world.a.headers).status_code == 409
    resp = client.delete(f"{N}/ports/{port}", headers=world.b.headers)
    assert resp.status_code == 404 and resp.get_json()["NeutronError"]["type"] == "PortNotFound"
    assert len(_ports(client, world.a)) == 2  # nothing changed


def test_quotas(client, world: World, net):
    a = world.a
    quota = _ok(client.get(f"{N}/quotas/{a.project_id}", headers=a.headers), 200)["quota"]
    assert quota == {"network": 0, "subnet": 0, "port": -1}
    assert _ok(client.get(f"{N}/quotas/{a.project_id}/default", headers=a.headers), 200)["quota"] == quota
    details = _ok(client.get(f"{N}/quotas/{a.project_id}/details", headers=world.reader.headers), 200)["quota"]
    assert details["port"] == {"limit": -1, "used": 2, "reserved": 0}
    assert details["network"] == {"limit": 0, "used": 0, "reserved": 0}
    admin_details = _ok(client.get(f"{N}/quotas/{world.admin.project_id}/details", headers=world.admin.headers),
                        200)["quota"]
    assert admin_details["network"]["used"] == 1  # the admin project owns the built-in network
    resp = client.get(f"{N}/quotas/{a.project_id}", headers=world.b.headers)
    assert resp.status_code == 403
    assert resp.get_json()["NeutronError"]["message"] == "rule:get_quota is disallowed by policy"
    resp = client.get(f"{N}/quotas", headers=a.headers)
    assert resp.status_code == 403 and resp.get_json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert _ok(client.get(f"{N}/quotas", headers=world.admin.headers), 200) == {"quotas": []}
    resp = client.put(f"{N}/quotas/{a.project_id}", json={"quota": {"port": 5}}, headers=a.headers)
    assert resp.status_code == 403
    resp = client.put(f"{N}/quotas/{a.project_id}", json={"quota": {"port": 5}}, headers=world.admin.headers)
    assert resp.status_code == 409


def test_boot_onto_the_network_by_id_and_unknown_networks(client, world: World):
    from core.network import builtin
    resp = _boot(client, world.a, world.image_id, world.flavor_id, "x", [{"uuid": builtin().id}])
    assert resp.status_code == 202
    missing = str(uuid.uuid4())
    resp = _boot(client, world.a, world.image_id, world.flavor_id, "y", [{"uuid": missing}])
    assert resp.status_code == 400
    assert resp.get_json() == {"badRequest": {"code": 400, "message": f"Network {missing} could not be found."}}


def test_catalog_has_the_network_service(client, admin):
    resp = client.get("/identity/v3/auth/catalog", headers=admin.headers)
    entries = {e["type"]: e for e in resp.get_json()["catalog"]}
    assert entries["network"]["name"] == "neutron"
    assert {e["url"] for e in entries["network"]["endpoints"]} == {"http://stratus.test/networking"}


def test_system_scoped_tokens_are_refused(client, admin):
    from tests.unit.conftest import ADMIN_PASSWORD
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}}, "scope": {"system": {"all": True}}}}
    token = client.post("/identity/v3/auth/tokens", json=body).headers["X-Subject-Token"]
    resp = client.get(f"{N}/networks", headers={"X-Auth-Token": token})
    assert resp.status_code == 403 and resp.get_json()["NeutronError"]["type"] == "PolicyNotAuthorized"


def test_every_networking_route_has_a_policy_rule(app):
    from app.policy import DEFAULTS, view_rules
    unnamed = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not rule.rule.startswith("/networking") or getattr(view, "policy_public", False):
            continue
        if rule.endpoint.startswith("network_root."):
            assert hasattr(view, "policy_rules"), rule.rule  # any token: discovery
            continue
        names = view_rules(rule.endpoint, view)
        if not names or any(n not in DEFAULTS for n in names):
            unnamed.append(rule.rule)
    assert not unnamed


def test_compute_security_groups_as_nova_on_neutron_without_the_extension(client, world: World):
    h = {**world.a.headers, **COMPUTE}
    ok = client.post("/v2.1/servers", json={"server": {"name": "sg", "imageRef": world.image_id,
                                                       "flavorRef": world.flavor_id, "networks": "none",
                                                       "security_groups": [{"name": "default"}]}}, headers=h)
    assert ok.status_code == 202 and ok.get_json()["server"]["security_groups"] == [{"name": "default"}]
    resp = client.post("/v2.1/servers", json={"server": {"name": "sg2", "imageRef": world.image_id,
                                                         "flavorRef": world.flavor_id, "networks": "none",
                                                         "security_groups": [{"name": "web"}]}}, headers=h)
    assert resp.status_code == 400
    assert resp.get_json()["badRequest"]["message"] == "Unable to find security_group with name or id 'web'"
    server = _ok(client.get(f"/v2.1/servers/{world.server_id}", headers=h), 200)["server"]
    assert "security_groups" not in server
    assert _ok(client.get(f"/v2.1/servers/{world.server_id}/os-security-groups", headers=h), 200) == \
        {"security_groups": []}
    assert client.get(f"/v2.1/servers/{world.server_id}/os-security-groups",
                      headers={**world.b.headers, **COMPUTE}).status_code == 404
    for action in ("addSecurityGroup", "removeSecurityGroup"):
        resp = client.post(f"/v2.1/servers/{world.server_id}/action", json={action: {"name": "default"}}, headers=h)
        assert resp.status_code == 404
        assert resp.get_json()["itemNotFound"]["message"] == \
            f"Security group default is not found for project {world.a.project_id}"
        resp = client.post(f"/v2.1/servers/{world.server_id}/action", json={action: {}}, headers=h)
        assert resp.status_code == 400
        resp = client.post(f"/v2.1/servers/{world.server_id}/action", json={action: {"name": "default"}},
                           headers={**world.reader.headers, **COMPUTE})
        assert resp.status_code == 403
    for version in ("2.1", "2.96"):
        assert client.get("/v2.1/os-security-groups", headers={**world.a.headers,
                                                               "OpenStack-API-Version": f"compute {version}"}
                          ).status_code == 404


@pytest.fixture
def network_owner_rule(tmp_path, monkeypatch):
    """A policy file letting a project's member update its own networks (Neutron's rule for non-shared ones)."""
    f = tmp_path / "policy.yaml"
    f.write_text('"update_network": "role:member and project_id:%(project_id)s"\n')
    monkeypatch.setenv("STRATUS_POLICY_FILE", str(f))


def test_another_projects_network_is_not_there_for_a_write(network_owner_rule, client, world: World):
    """With a rule the caller passes for its own project but not for the network's (the admin project's), the
    answer is Neutron's 404, not a 403 that would confirm the network's owner."""
    from core.network import builtin
    resp = client.put(f"{N}/networks/{builtin().id}", json={"network": {"name": "x"}}, headers=world.a.headers)
    assert resp.status_code == 404
    assert resp.get_json()["NeutronError"] == {"type": "HTTPNotFound", "detail": "",
                                               "message": "The resource could not be found."}
    resp = client.put(f"{N}/networks/{builtin().id}", json={"network": {"name": "x"}}, headers=world.admin.headers)
    assert resp.status_code == 409
