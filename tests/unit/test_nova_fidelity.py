"""Issue 28: answers as Nova gives them, each found by an unmodified OpenStack client (in-process app and
conductor; tests/unit/inprocess.py)."""
from __future__ import annotations

import pytest

from tests.unit.inprocess import compute_version as _v, set_instance as _set_instance
from tests.unit.inprocess import COMPUTE, World, inprocess_conductor, world  # noqa: F401 (fixtures)

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


# --- item 1: nothing a client sends reaches the broker in a shape its encoder refuses ------------------------------

def test_create_update_rebuild_with_access_ips(client, world: World):
    """The in-process conductor gets its arguments through kombu's JSON as a worker does (kombu's EncodeError on
    an IPv4Address was a 500)."""
    from sqlalchemy import select

    from core.db import read_session
    from core.models import Instance
    ips = {"accessIPv4": "192.0.2.7", "accessIPv6": "2001:DB8:0:0::1"}
    created = client.post("/v2.1/servers", json={"server": {
        "name": "ips", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none", **ips}},
        headers={**world.a.headers, **COMPUTE})
    assert created.status_code == 202, created.get_json()
    uuid = created.get_json()["server"]["id"]
    shown = client.get(f"/v2.1/servers/{uuid}", headers={**world.a.headers, **COMPUTE}).get_json()["server"]
    assert (shown["accessIPv4"], shown["accessIPv6"]) == ("192.0.2.7", "2001:db8::1")  # normalized, as Nova
    updated = client.put(f"/v2.1/servers/{uuid}", json={"server": {"accessIPv4": "198.51.100.1"}},
                         headers={**world.a.headers, **COMPUTE})
    assert updated.status_code == 200 and updated.get_json()["server"]["accessIPv4"] == "198.51.100.1"
    _set_instance(uuid, vm_state="active", task_state=None, host="h1", node="h1")
    rebuilt = client.post(f"/v2.1/servers/{uuid}/action", json={"rebuild": {
        "imageRef": world.image_id, "accessIPv6": "2001:db8::2"}}, headers={**world.a.headers, **COMPUTE})
    assert rebuilt.status_code == 202, rebuilt.get_json()
    with read_session() as s:
        row = s.scalars(select(Instance).where(Instance.uuid == uuid)).one()
        assert (row.access_ip_v4, row.access_ip_v6) == ("198.51.100.1", "2001:db8::2")


@pytest.mark.parametrize("value", [__import__("ipaddress").ip_address("192.0.2.1"), __import__("datetime").date.today(),
                                   __import__("uuid").uuid4(), __import__("decimal").Decimal("1.5"), {1, 2}, (1, 2),
                                   {1: "non-string key"}, float("nan"), b"bytes"])
def test_rpc_refuses_what_is_not_plain_json_before_sending(monkeypatch, value):
    from tasks.messaging import plain_json, rpc
    from tasks.messaging.celery_app import celery
    sent: list = []
    monkeypatch.setattr(celery, "send_task", lambda *a, **kw: sent.append(a))
    with pytest.raises(plain_json.NotPlainJson, match=r"args\[1\]\['v'\]"):
        rpc.call("stratus.conductor.anything", "id", {"v": value})
    with pytest.raises(plain_json.NotPlainJson):
        rpc.cast("stratus.compute.anything", [value], queue="compute.h1")
    assert sent == []


def test_plain_json_passes_what_json_carries():
    from tasks.messaging import plain_json
    plain_json.check(("a", 1, 2.5, True, None, {"k": [1, {"n": None}]}, []))


_NOT_JSON_FIELDS = ("IP", "IPv4", "IPv6", "IPInterface", "IPv4Interface", "IPv6Interface", "UUID", "DateTime",
                    "NaiveDateTime", "AwareDateTime", "Date", "Time", "TimeDelta", "Decimal", "Enum", "Tuple")


def _fields(schema) -> list:
    from marshmallow import fields
    out = []
    for field in schema().fields.values():
        stack = [field]
        while stack:
            f = stack.pop()
            out.append(f)
            if isinstance(f, fields.Nested):
                stack.extend(f.schema.fields.values())
            if isinstance(f, fields.List):
                stack.append(f.inner)
            if isinstance(f, fields.Dict):
                stack.extend(x for x in (f.key_field, f.value_field) if x is not None)
    return out


def test_no_request_schema_loads_a_value_json_cannot_carry(app):
    """Every body schema a view or a server action declares loads plain JSON: a marshmallow field that loads an
    object (an address, a date, a UUID, a Decimal, a tuple) must be one of Stratus's that loads its string."""
    from marshmallow import fields

    from app.compute.actions import ARGUMENT_SCHEMAS
    from app.compute.request_body import declared_body
    schemas = {s for view in app.view_functions.values() if (d := declared_body(view)) for s in d.schemas()}
    schemas |= set(ARGUMENT_SCHEMAS.values())
    assert len(schemas) > 5
    refused = [cls for name in _NOT_JSON_FIELDS if (cls := getattr(fields, name, None))]
    for schema in schemas:
        for f in _fields(schema):
            if isinstance(f, tuple(refused)):
                assert type(f)._deserialize.__module__.startswith("app."), (schema.__name__, f.name, type(f))


# --- item 2: OPTIONS on every path, and 405s with Allow -------------------------------------------------------------

_ARG = __import__("re").compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _concrete(rule: str) -> str:
    return _ARG.sub(lambda m: "1" if m.group(1).endswith("id") else "x", rule)


def _rules(app) -> list:
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: r.rule)


_NEWEST = {"OpenStack-API-Version": "compute %d.%d" % __import__("app.microversion").microversion.MAX_VERSION}


def test_options_answers_allow_on_every_path_and_runs_no_view(app, client, admin, make_user):
    member = make_user("mo", "proj-o", "member")
    for rule in _rules(app):
        path = _concrete(rule.rule)
        for who in (admin, member):
            resp = client.open(path, method="OPTIONS", headers={**who.headers, **_NEWEST})
            assert resp.status_code == 200, (path, resp.status_code, resp.get_data(as_text=True))
            allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
            assert set(rule.methods) <= allowed, (path, allowed)
            assert resp.get_data() == b""  # nothing of the resource: no view ran
        assert client.open(path, method="OPTIONS").status_code in (200, 401)  # public routes answer without a token


def test_allow_lists_the_path_own_methods_at_the_request_microversion(client, admin):
    """Schemathesis' Allow check: a static path does not advertise the methods of the variable route beside it,
    and a route newer than the microversion (it answers 404 there) is not advertised."""
    def allow(path: str, version: str) -> set[str]:
        resp = client.open(path, method="OPTIONS",
                           headers={**admin.headers, "OpenStack-API-Version": f"compute {version}"})
        return {m.strip() for m in resp.headers["Allow"].split(",")}

    assert allow("/v2.1/flavors/detail", "2.96") == {"GET", "HEAD", "OPTIONS"}
    assert "PUT" not in allow("/v2.1/flavors/1", "2.1") and "PUT" in allow("/v2.1/flavors/1", "2.55")
    resp = client.post("/v2.1/flavors/detail", headers=admin.headers, json={})
    assert resp.status_code == 405 and "PUT" not in resp.headers["Allow"]


def test_options_needs_a_token_where_the_route_does(client):
    resp = client.open("/v2.1/servers", method="OPTIONS")
    assert resp.status_code == 401


def test_method_not_allowed_carries_allow_on_every_path(app, client, admin):
    adapter = app.url_map.bind("stratus.test")
    checked = 0
    for rule in _rules(app):
        path = _concrete(rule.rule)
        routed = set(adapter.allowed_methods(path))  # every route on this path, so no view is reached below
        # the path's own methods: /flavors/detail's PUT is /flavors/<flavor_id>'s
        allowed = set().union(*(r.methods for r in app.url_map.iter_rules() if r.rule == rule.rule))
        for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - routed):
            resp = client.open(path, method=method, headers={**admin.headers, **_NEWEST}, json={})
            assert resp.status_code == 405, (method, path, resp.status_code)
            assert {m.strip() for m in resp.headers["Allow"].split(",")} == allowed, (method, path)
            checked += 1
    assert checked > 50


# --- item 8: a server's volume attachments ---------------------------------------------------------------------

def test_volume_attachments_of_a_server_without_volumes(client, world: World):
    url = f"/v2.1/servers/{world.server_id}/os-volume_attachments"
    for who in (world.a, world.reader, world.admin):
        resp = client.get(url, headers={**who.headers, **COMPUTE})
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json() == {"volumeAttachments": []}
    assert client.get(url, headers=world.b.headers).status_code == 404  # another project's server: not there
    missing = client.get("/v2.1/servers/00000000-0000-0000-0000-000000000000/os-volume_attachments",
                         headers=world.a.headers)
    assert missing.status_code == 404 and "itemNotFound" in missing.get_json()
    one = client.get(f"{url}/11111111-1111-1111-1111-111111111111", headers=world.a.headers)
    assert one.status_code == 404
    assert one.get_json()["itemNotFound"]["message"] == (f"Instance {world.server_id} is not attached to volume "
                                                         f"11111111-1111-1111-1111-111111111111")


# --- item 6: key pairs are parsed as keys ---------------------------------------------------------------------------

INVALID = "Keypair data is invalid: failed to generate fingerprint"


@pytest.mark.parametrize("public_key", [
    "ssh-rsa JUNK nova@ubuntu",                            # tempest test_keypair_create_with_invalid_pub_key
    "ssh-rsa " + "A" * 2048 + " openstack@ubuntu",         # ..._when_public_key_bits_exceeds_maximum
    " ",                                                   # ..._with_empty_public_key
    "ssh-ed25519 AAAAC3NzaC1yc2EAAAADAQABAAABAQ== x",       # base64, but no key of its type
    "ecdsa-sha2-nistp256 AAAA x"])
def test_keypair_import_refuses_what_is_no_public_key(client, admin, inprocess_conductor, public_key):
    resp = client.post("/v2.1/os-keypairs", json={"keypair": {"name": "k", "public_key": public_key}},
                       headers={**admin.headers, **COMPUTE})
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["badRequest"]["message"] == INVALID


def test_keypair_import_fingerprints_real_keys_as_nova(client, admin, inprocess_conductor):
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    keys = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ecdsa": ec.generate_private_key(ec.SECP256R1())}
    for name, key in keys.items():
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode() + " me@host\n"
        resp = client.post("/v2.1/os-keypairs", json={"keypair": {"name": name, "public_key": public}},
                           headers={**admin.headers, **COMPUTE})
        assert resp.status_code == 201, resp.get_json()
        digest = hashlib.md5(base64.b64decode(public.split()[1])).hexdigest()
        assert resp.get_json()["keypair"]["fingerprint"] == ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def test_keypair_import_x509_certificate_as_nova(client, admin, inprocess_conductor):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    resp = client.post("/v2.1/os-keypairs", json={"keypair": {"name": "cert", "type": "x509", "public_key": pem}},
                       headers={**admin.headers, **COMPUTE})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["keypair"]["fingerprint"].replace(":", "") == cert.fingerprint(hashes.SHA1()).hex()
    bad = client.post("/v2.1/os-keypairs", json={"keypair": {"name": "bad", "type": "x509", "public_key": "x"}},
                      headers={**admin.headers, **COMPUTE})
    assert bad.status_code == 400
    assert bad.get_json()["badRequest"]["message"].startswith(
        "Keypair data is invalid: failed to generate X509 fingerprint. Error message: ")


# --- item 5: GET /os-hypervisors/{id}/uptime ------------------------------------------------------------------------

def _compute_host(host: str, up: bool = True) -> None:
    import datetime as dt

    from core.db import write_session
    from core.models import ComputeNode, Service, utcnow
    with write_session() as s:
        svc = Service(host=host, binary="nova-compute", topic="compute",
                      last_seen_at=utcnow() - dt.timedelta(seconds=0 if up else 3600))
        s.add(svc)
        s.flush()
        s.add(ComputeNode(service_id=svc.id, host=host, hypervisor_hostname=host, hypervisor_type="fake",
                          hypervisor_version=1, vcpus=8, memory_mb=4096, local_gb=40, vcpus_used=0,
                          memory_mb_used=0, local_gb_used=0, running_vms=0))


@pytest.fixture
def compute_rpc(monkeypatch):
    """rpc.call runs the compute host's task in-process too (the fake driver of that host)."""
    from core.errors import ApiError
    from tasks.messaging import plain_json, rpc
    from tasks.messaging.celery_app import celery
    celery.loader.import_default_modules()

    def call(task_name: str, *args, queue: str = "conductor", **_):
        plain_json.check(args)
        reply = celery.tasks[task_name](*args)
        if "error" in reply:
            raise ApiError(reply["error"]["code"], reply["error"]["message"])
        return reply["ok"]
    monkeypatch.setattr(rpc, "call", call)


def test_hypervisor_uptime_for_admins_until_2_87(client, admin, make_user, compute_rpc):
    import re
    _compute_host("up-host")
    _compute_host("down-host", up=False)
    listed = client.get("/v2.1/os-hypervisors", headers={**admin.headers, **_v("2.87")}).get_json()["hypervisors"]
    ids = {h["hypervisor_hostname"]: h["id"] for h in listed}
    resp = client.get(f"/v2.1/os-hypervisors/{ids['up-host']}/uptime", headers={**admin.headers, **_v("2.87")})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()["hypervisor"]
    assert body["id"] == ids["up-host"] and body["hypervisor_hostname"] == "up-host"
    assert re.match(r"^ \d\d:\d\d:\d\d up .*load average: \d+\.\d\d, \d+\.\d\d, \d+\.\d\d$", body["uptime"])
    old = client.get("/v2.1/os-hypervisors", headers={**admin.headers, **_v("2.1")}).get_json()["hypervisors"]
    old_id = next(h["id"] for h in old if h["hypervisor_hostname"] == "up-host")
    assert client.get(f"/v2.1/os-hypervisors/{old_id}/uptime", headers=admin.headers).status_code == 200
    down = client.get(f"/v2.1/os-hypervisors/{ids['down-host']}/uptime", headers={**admin.headers, **_v("2.87")})
    assert down.status_code == 400
    assert down.get_json()["badRequest"]["message"] == "Compute service of down-host is unavailable at this time."
    member = make_user("m", "p", "member")
    assert client.get(f"/v2.1/os-hypervisors/{ids['up-host']}/uptime",
                      headers={**member.headers, **_v("2.87")}).status_code == 403
    assert client.get(f"/v2.1/os-hypervisors/{ids['up-host']}/uptime",
                      headers={**admin.headers, **_v("2.88")}).status_code == 404
    bad = client.get("/v2.1/os-hypervisors/not-a-uuid/uptime", headers={**admin.headers, **_v("2.53")})
    assert bad.status_code == 400
    unknown = client.get("/v2.1/os-hypervisors/00000000-0000-0000-0000-000000000000/uptime",
                         headers={**admin.headers, **_v("2.53")})
    assert unknown.status_code == 404
    assert client.get("/v2.1/os-hypervisors/abc/uptime", headers=admin.headers).status_code == 404


def test_hypervisor_show_has_the_uptime_from_2_88(client, admin, compute_rpc):
    _compute_host("up-host")
    node_id = client.get("/v2.1/os-hypervisors", headers={**admin.headers, **_v("2.88")}).get_json()[
        "hypervisors"][0]["id"]
    shown = client.get(f"/v2.1/os-hypervisors/{node_id}", headers={**admin.headers, **_v("2.88")}).get_json()
    assert " up " in shown["hypervisor"]["uptime"]


def test_uptime_line_reads_like_uptime():
    from drivers.base import uptime_line
    assert uptime_line(0, 93 * 86400 + 18 * 3600 + 25 * 60, (0.2, 0.12, 0.14)).endswith(
        " up 93 days, 18:25,  0 users,  load average: 0.20, 0.12, 0.14")
    assert " up 5 min,  1 user, " in uptime_line(0, 300, (0, 0, 0), users=1)
    assert " up 1 day,  2:03, " in uptime_line(0, 86400 + 2 * 3600 + 3 * 60 + 10, (0, 0, 0))


# --- item 7: os-services speaks Nova's binaries, with the conductor and the scheduler ------------------------------

def _services(client, admin, query: str = "") -> list[dict]:
    resp = client.get(f"/v2.1/os-services{query}", headers={**admin.headers, **COMPUTE})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["services"]


def test_services_are_nova_binaries_with_their_heartbeats(client, admin, inprocess_conductor):
    import datetime as dt

    from sqlalchemy import update

    from core.db import write_session
    from core.models import Service, utcnow
    from tasks.messaging.celery_app import celery
    celery.tasks["stratus.conductor.report_service"]("fake-1", {
        "hypervisor_hostname": "fake-1", "hypervisor_type": "fake", "hypervisor_version": 1, "vcpus": 4,
        "memory_mb": 1024, "local_gb": 10, "host_ip": None, "availability_zone": "nova", "up": True})
    for host, binary in (("ctl-1", "nova-conductor"), ("ctl-1", "nova-scheduler"), ("ctl-2", "nova-conductor")):
        celery.tasks["stratus.conductor.service_heartbeat"](host, binary)
    celery.tasks["stratus.conductor.service_heartbeat"]("ctl-1", "nova-conductor")  # a second beat: same row
    with write_session() as s:  # ctl-2's conductor stopped beating long ago
        s.execute(update(Service).where(Service.host == "ctl-2").values(
            last_seen_at=utcnow() - dt.timedelta(hours=1)))
    rows = {(s["binary"], s["host"]): s for s in _services(client, admin)}
    assert set(rows) == {("nova-compute", "fake-1"), ("nova-conductor", "ctl-1"), ("nova-scheduler", "ctl-1"),
                         ("nova-conductor", "ctl-2")}
    assert rows[("nova-compute", "fake-1")]["zone"] == "nova"
    assert {rows[k]["zone"] for k in rows if k[0] != "nova-compute"} == {"internal"}
    assert [rows[k]["state"] for k in (("nova-conductor", "ctl-1"), ("nova-scheduler", "ctl-1"),
                                       ("nova-conductor", "ctl-2"))] == ["up", "up", "down"]
    assert [s["host"] for s in _services(client, admin, "?binary=nova-compute")] == ["fake-1"]
    assert {s["host"] for s in _services(client, admin, "?binary=nova-conductor")} == {"ctl-1", "ctl-2"}
    assert {s["binary"] for s in _services(client, admin, "?host=ctl-1")} == {"nova-conductor", "nova-scheduler"}
    assert _services(client, admin, "?binary=stratus-compute") == []
    zones = client.get("/v2.1/os-availability-zone/detail", headers=admin.headers).get_json()["availabilityZoneInfo"]
    internal = next(z for z in zones if z["zoneName"] == "internal")
    assert set(internal["hosts"]["ctl-1"]) == {"nova-conductor", "nova-scheduler"}


def test_a_conductor_on_a_compute_host_is_still_internal(client, admin, inprocess_conductor):
    from tasks.messaging.celery_app import celery
    celery.tasks["stratus.conductor.report_service"]("same", {
        "hypervisor_hostname": "same", "hypervisor_type": "fake", "hypervisor_version": 1, "vcpus": 4,
        "memory_mb": 1024, "local_gb": 10, "host_ip": None, "availability_zone": "az-1", "up": True})
    celery.tasks["stratus.conductor.service_heartbeat"]("same", "nova-conductor")
    assert {s["binary"]: s["zone"] for s in _services(client, admin, "?host=same")} == {
        "nova-compute": "az-1", "nova-conductor": "internal"}


def test_conductor_and_scheduler_workers_send_expiring_heartbeats(monkeypatch):
    import threading

    from tasks import service_heartbeat
    from tasks.messaging.celery_app import celery
    sent: list = []
    monkeypatch.setattr(celery, "send_task", lambda name, **kw: sent.append((name, kw)))
    assert service_heartbeat.binaries_of({"conductor.rpc", "conductor"}) == ["nova-conductor"]
    assert service_heartbeat.binaries_of({"scheduler"}) == ["nova-scheduler"]
    assert service_heartbeat.binaries_of({"compute.fake-1"}) == []
    stop = threading.Event()
    stop.set()  # one round, then the loop ends
    monkeypatch.setattr(service_heartbeat, "consumer_alive", lambda: (False, "the task consumer has not started"))
    service_heartbeat.heartbeat_loop("ctl", ["nova-conductor", "nova-scheduler"], stop)
    assert sent == []  # a worker whose consumer is dead sends no heartbeat (issue 27)
    monkeypatch.setattr(service_heartbeat, "consumer_alive", lambda: (True, ""))
    service_heartbeat.heartbeat_loop("ctl", ["nova-conductor", "nova-scheduler"], stop)
    assert [(name, kw["args"], kw["queue"]) for name, kw in sent] == [
        ("stratus.conductor.service_heartbeat", ("ctl", "nova-conductor"), "conductor"),
        ("stratus.conductor.service_heartbeat", ("ctl", "nova-scheduler"), "conductor")]
    assert all(kw["expires"] > 0 for _, kw in sent)


def test_server_group_rule_digits_beyond_ascii_or_the_column_are_400s(client, admin):
    """The Schemathesis run: "²" is a digit to str.isdigit that int() refuses (it was a 500), and a string of
    digits beyond the column's range is refused before the database sees it."""
    headers = {**admin.headers, "OpenStack-API-Version": "compute 2.64"}
    for value in ("²", "00", "99999999999"):
        resp = client.post("/v2.1/os-server-groups", headers=headers, json={"server_group": {
            "name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": value}}})
        assert resp.status_code == 400, (value, resp.status_code)
