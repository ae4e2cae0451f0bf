"""Version-gated behaviour from docs/microversions.md, asserted on both sides of each boundary (in-process API)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select

from tests.unit.inprocess import compute_version as _v, set_instance as _set_instance
from tests.unit.inprocess import PUBLIC_KEY, inprocess_conductor, world  # noqa: F401 (fixtures)




# --- 2.92: '@' and '.' in key pair names ---------------------------------------------------------------------------

def test_keypair_name_special_characters_from_2_92(client, world):
    body = {"keypair": {"name": "me@host.example", "public_key": PUBLIC_KEY}}
    old = client.post("/v2.1/os-keypairs", json=body, headers={**world.a.headers, **_v("2.91")})
    assert old.status_code == 400 and "unsafe characters" in old.get_json()["badRequest"]["message"]
    new = client.post("/v2.1/os-keypairs", json=body, headers={**world.a.headers, **_v("2.92")})
    assert new.status_code == 201, new.get_data(as_text=True)
    assert new.get_json()["keypair"]["name"] == "me@host.example"


# --- 2.29 / 2.30 / 2.68: the force flag of evacuate and live-migrate ----------------------------------------------

@pytest.mark.parametrize("action, since", [
    ({"evacuate": {"host": "h2", "force": False}}, "2.29"),
    ({"os-migrateLive": {"host": "h2", "block_migration": "auto", "force": False}}, "2.30"),
])
def test_force_only_between_its_version_and_2_68(client, world, monkeypatch, action, since):
    from tasks.messaging import rpc
    calls: list[dict] = []
    monkeypatch.setattr(rpc, "call", lambda name, req, **kw: calls.append(req) or {})
    _set_instance(world.server_id, vm_state="active", host="h1", node="h1")
    major, minor = since.split(".")
    url = f"/v2.1/servers/{world.server_id}/action"
    for version, ok in ((f"{major}.{int(minor) - 1}", False), (since, True), ("2.67", True), ("2.68", False)):
        resp = client.post(url, json=action, headers={**world.admin.headers, **_v(version)})
        if ok:
            assert resp.status_code in (200, 202), (version, resp.get_data(as_text=True))
        else:
            assert resp.status_code == 400, (version, resp.get_data(as_text=True))
            assert "'force' was unexpected" in resp.get_json()["badRequest"]["message"]
    assert len(calls) == 2


# --- 2.95: an evacuated server arrives stopped ---------------------------------------------------------------------

def _hosts() -> None:
    from core.db import write_session
    from core.models import ComputeNode, Service, utcnow
    with write_session() as s:
        for host, seen in (("h1", utcnow() - dt.timedelta(hours=1)), ("h2", utcnow())):
            svc = Service(host=host, binary="nova-compute", topic="compute", last_seen_at=seen)
            s.add(svc)
            s.flush()
            s.add(ComputeNode(service_id=svc.id, host=host, hypervisor_hostname=host, hypervisor_type="fake",
                              hypervisor_version=1, vcpus=8, memory_mb=4096, local_gb=40, vcpus_used=0,
                              memory_mb_used=0, local_gb_used=0, running_vms=0))


@pytest.mark.parametrize("version, prior, expected", [
    ("2.94", "active", "active"), ("2.94", "stopped", "stopped"), ("2.95", "active", "stopped")])
def test_evacuate_leaves_server_stopped_from_2_95(client, world, monkeypatch, version, prior, expected):
    from core.db import read_session
    from core.models import Instance
    from tasks.conductor import moves
    _hosts()
    _set_instance(world.server_id, vm_state=prior, task_state=None, host="h1", node="h1")
    started: list[dict] = []
    monkeypatch.setattr(moves, "run_ops", started.append)
    resp = client.post(f"/v2.1/servers/{world.server_id}/action", json={"evacuate": {}},
                       headers={**world.admin.headers, **_v(version)})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    (ctx,) = started
    assert ctx["dest"] == "h2"
    moves.finish_move({**ctx, "power_state": 1 if expected == "active" else 4})
    with read_session() as s:
        inst = s.scalars(select(Instance).where(Instance.uuid == world.server_id)).one()
        assert (inst.vm_state, inst.host, inst.task_state) == (expected, "h2", None)


# --- server list query parameters: 2.5 ip6, 2.73 locked, 2.75 strict, 2.83 non-admin filters ----------------------

def _listed(client, cred, version: str, query: str) -> list[str]:
    resp = client.get(f"/v2.1/servers?{query}", headers={**cred.headers, **_v(version)})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [s["id"] for s in resp.get_json()["servers"]]


def test_unknown_list_parameter_is_400_from_2_75(client, world):
    assert _listed(client, world.a, "2.74", "foo=1") == [world.server_id]
    resp = client.get("/v2.1/servers?foo=1", headers={**world.a.headers, **_v("2.75")})
    assert resp.status_code == 400
    assert resp.get_json()["badRequest"]["message"] == "Additional properties are not allowed ('foo' was unexpected)"
    assert _listed(client, world.a, "2.75", "metadata=x&limit=5") == [world.server_id]  # Nova's known names


def test_locked_filter_and_sort_key_from_2_73(client, world):
    url = f"/v2.1/servers/{world.server_id}/action"
    lock = client.post(url, json={"lock": {"locked_reason": "audit"}}, headers={**world.a.headers, **_v("2.73")})
    assert lock.status_code == 202, lock.get_data(as_text=True)
    assert _listed(client, world.a, "2.72", "locked=false") == [world.server_id]  # ignored before 2.73
    assert _listed(client, world.a, "2.73", "locked=false") == []
    assert _listed(client, world.a, "2.73", "locked=true") == [world.server_id]
    assert client.get("/v2.1/servers?locked=maybe", headers={**world.a.headers, **_v("2.73")}).status_code == 400
    assert _listed(client, world.a, "2.72", "sort_key=locked") == [world.server_id]  # accepted, ignored
    assert _listed(client, world.a, "2.74", "sort_key=vcpus") == [world.server_id]  # Nova's ignored keys ...
    assert client.get("/v2.1/servers?sort_key=vcpus", headers={**world.a.headers, **_v("2.75")}).status_code == 400
    assert client.get("/v2.1/servers?sort_key=nope", headers={**world.a.headers, **_v("2.1")}).status_code == 400
    assert _listed(client, world.a, "2.73", "locked=false") == []
    other = client.post("/v2.1/servers", json={"server": {"name": "unlocked", "imageRef": world.image_id,
                                                          "flavorRef": world.flavor_id, "networks": "none"}},
                        headers={**world.a.headers, **_v("2.73")}).get_json()["server"]["id"]
    assert _listed(client, world.a, "2.73", "sort_key=locked&sort_dir=asc") == [other, world.server_id]
    assert _listed(client, world.a, "2.73", "sort_key=locked&sort_dir=desc") == [world.server_id, other]


@pytest.mark.parametrize("query", ["key_name=nope", "vm_state=active", "power_state=4", "user_id=someone",
                                   "created_at=1999-", "config_drive=true", "progress=50", "task_state=x"])
def test_non_admin_instance_filters_from_2_83(client, world, query):
    assert _listed(client, world.a, "2.82", query) == [world.server_id]  # a non-admin's filter is dropped
    assert _listed(client, world.a, "2.83", query) == []
    assert _listed(client, world.admin, "2.1", f"{query}&all_tenants=1") == []  # admins filter at any version


def test_ip6_filter_for_non_admins_from_2_5(client, world):
    assert _listed(client, world.a, "2.4", "ip6=.") == [world.server_id]
    assert _listed(client, world.a, "2.5", "ip6=.") == []  # Stratus servers have no IPv6 address
    assert _listed(client, world.a, "2.1", "ip=.") == []  # networks "none": no address at all
    assert client.get("/v2.1/servers?ip=(", headers={**world.a.headers, **_v("2.1")}).status_code == 400


# --- 2.35: key pair paging -----------------------------------------------------------------------------------------

def test_keypair_paging_from_2_35(client, world):
    for name in ("b-key", "c-key"):
        body = {"keypair": {"name": name, "public_key": PUBLIC_KEY}}
        assert client.post("/v2.1/os-keypairs", json=body, headers={**world.a.headers, **_v("2.35")}).status_code == 201

    def names(version: str, query: str) -> tuple[list[str], dict]:
        resp = client.get(f"/v2.1/os-keypairs?{query}", headers={**world.a.headers, **_v(version)})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [k["keypair"]["name"] for k in resp.get_json()["keypairs"]], resp.get_json()

    assert names("2.34", "limit=1&marker=a-key")[0] == ["a-key", "b-key", "c-key"]  # ignored before 2.35
    page, body = names("2.35", "limit=1&marker=a-key")
    assert page == ["b-key"]
    assert body["keypairs_links"][0]["href"].endswith("/v2.1/os-keypairs?limit=1&marker=b-key")
    assert names("2.35", "marker=b-key")[0] == ["c-key"] and "keypairs_links" not in names("2.35", "marker=b-key")[1]
    missing = client.get("/v2.1/os-keypairs?marker=zzz", headers={**world.a.headers, **_v("2.35")})
    assert missing.status_code == 400 and "zzz could not be found" in missing.get_json()["badRequest"]["message"]
    assert client.get("/v2.1/os-keypairs?limit=-1", headers={**world.a.headers, **_v("2.35")}).status_code == 400


# --- 2.58 / 2.66: instance action paging and time filters ---------------------------------------------------------

def test_instance_action_paging_from_2_58(client, world):
    from core.db import write_session
    from core.models import InstanceAction
    t0 = dt.datetime(2030, 1, 1)
    with write_session() as s:
        for i in range(3):
            s.add(InstanceAction(instance_uuid=world.server_id, action="stop", request_id=f"req-{i}",
                                 user_id=world.a.user_id, project_id=world.a.project_id,
                                 start_time=t0 + dt.timedelta(hours=i), updated_at=t0 + dt.timedelta(hours=i)))
    url = f"/v2.1/servers/{world.server_id}/os-instance-actions"

    def ids(version: str, query: str) -> tuple[list[str], dict]:
        resp = client.get(f"{url}?{query}", headers={**world.a.headers, **_v(version)})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [a["request_id"] for a in resp.get_json()["instanceActions"]], resp.get_json()

    every = ids("2.57", "limit=1&marker=req-2&changes-since=2030-01-01T01:00:00Z")[0]
    assert every[:3] == ["req-2", "req-1", "req-0"] and len(every) == 4  # ignored before 2.58 (+ the create)
    page, body = ids("2.58", "limit=1&marker=req-2")
    assert page == ["req-1"] and "marker=req-1" in body["links"][0]["href"]
    assert ids("2.58", "changes-since=2030-01-01T01:00:00Z")[0] == ["req-2", "req-1"]
    assert client.get(f"{url}?changes-before=2030-01-01T01:00:00Z",
                      headers={**world.a.headers, **_v("2.65")}).status_code == 400
    assert ids("2.66", "changes-before=2030-01-01T01:00:00Z")[0][:2] == ["req-1", "req-0"]  # and the create
    assert client.get(f"{url}?marker=nope", headers={**world.a.headers, **_v("2.58")}).status_code == 400
    assert client.get(f"{url}?foo=1", headers={**world.a.headers, **_v("2.58")}).status_code == 400


# --- 2.90 / 2.94: hostname is one DNS label, then may be an FQDN -------------------------------------------------

def test_hostname_fqdn_only_from_2_94(client, world):
    url = f"/v2.1/servers/{world.server_id}"
    fqdn = {"server": {"hostname": "web-1.example.org"}}
    assert client.put(url, json={"server": {"hostname": "web-1"}},
                      headers={**world.a.headers, **_v("2.89")}).status_code == 400  # no hostname before 2.90
    old = client.put(url, json=fqdn, headers={**world.a.headers, **_v("2.93")})
    assert old.status_code == 400 and "hostname" in old.get_json()["badRequest"]["message"]
    assert client.put(url, json={"server": {"hostname": "web-1"}},
                      headers={**world.a.headers, **_v("2.93")}).status_code == 200
    new = client.put(url, json=fqdn, headers={**world.a.headers, **_v("2.94")})
    assert new.status_code == 200, new.get_data(as_text=True)
    assert new.get_json()["server"]["OS-EXT-SRV-ATTR:hostname"] == "web-1.example.org"
    for bad in ("-web", "web_1", "a" * 64, "web..example"):
        bad_body = {"server": {"hostname": bad}}
        assert client.put(url, json=bad_body, headers={**world.a.headers, **_v("2.94")}).status_code == 400, bad


# --- 2.77 / 2.91 / 2.96: unshelve into a zone or unpinned, shown as pinned_availability_zone ----------------------

@pytest.mark.parametrize("version, body, code, pinned", [
    ("2.91", None, 400, "elsewhere"),  # still pinned to a zone no host is in: no valid host
    ("2.90", {"availability_zone": None}, 400, "elsewhere"),  # null (unpin) only from 2.91
    ("2.91", {"availability_zone": None}, 202, None),
    ("2.77", {"availability_zone": "nova"}, 202, "nova"),
])
def test_unshelve_zone_and_unpin(client, world, monkeypatch, version, body, code, pinned):
    from tasks.conductor import moves
    _hosts()
    _set_instance(world.server_id, vm_state="shelved_offloaded", task_state=None, host=None, node=None,
                  requested_availability_zone="elsewhere")
    monkeypatch.setattr(moves, "run_ops", lambda ctx: None)
    resp = client.post(f"/v2.1/servers/{world.server_id}/action", json={"unshelve": body},
                       headers={**world.a.headers, **_v(version)})
    assert resp.status_code == code, resp.get_data(as_text=True)
    shown = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.a.headers, **_v("2.96")})
    assert shown.get_json()["server"]["pinned_availability_zone"] == pinned
    before = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.a.headers, **_v("2.95")})
    assert "pinned_availability_zone" not in before.get_json()["server"]


# --- 2.74: host / hypervisor_hostname at create ------------------------------------------------------------------

def test_requested_host_at_create_from_2_74(client, world, monkeypatch):
    from scheduler.host_state import HostState, RequestSpec
    from tasks.conductor import boot
    from tasks.scheduler import decide
    _hosts()
    booted: list[dict] = []
    monkeypatch.setattr(boot, "boot_canvas", lambda ctx: booted.append(ctx) or type(
        "Canvas", (), {"apply_async": lambda self: None})())
    server = {"name": "pinned", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              "host": "h2"}
    old = client.post("/v2.1/servers", json={"server": server}, headers={**world.admin.headers, **_v("2.73")})
    assert old.status_code == 400 and "'host' was unexpected" in old.get_json()["badRequest"]["message"]
    member = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **_v("2.74")})
    assert member.status_code == 403  # admin-only by default, as in Nova
    missing = {**server, "host": "nowhere"}
    resp = client.post("/v2.1/servers", json={"server": missing}, headers={**world.admin.headers, **_v("2.74")})
    assert resp.status_code == 400 and resp.get_json()["badRequest"]["message"] == \
        "Compute host nowhere could not be found."
    by_node = {**server, "hypervisor_hostname": "h2"}
    del by_node["host"]
    for body in (server, by_node):
        resp = client.post("/v2.1/servers", json={"server": body}, headers={**world.admin.headers, **_v("2.74")})
        assert resp.status_code == 202, resp.get_data(as_text=True)
    assert [ctx["requested_host"] for ctx in booted] == ["h2", "h2"]
    roomy = HostState(host="h1", node_id=1, availability_zone="nova", enabled=True, up=True, vcpus=64,
                      memory_mb=65536, local_gb=1000)
    small = HostState(host="h2", node_id=2, availability_zone="nova", enabled=True, up=True, vcpus=2,
                      memory_mb=1024, local_gb=10)
    spec = RequestSpec(instance_uuid="u", vcpus=1, memory_mb=64, root_gb=1)
    assert decide([roomy, small], spec, 1).hosts == ["h1"]
    assert decide([roomy, small], dataclasses.replace(spec, requested_host="h2"), 1).hosts == ["h2"]


def test_zone_host_form_restricts_to_that_host(client, world, monkeypatch):
    from tasks.conductor import boot
    _hosts()
    booted: list[dict] = []
    monkeypatch.setattr(boot, "boot_canvas", lambda ctx: booted.append(ctx) or type(
        "Canvas", (), {"apply_async": lambda self: None})())
    server = {"name": "forced", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              "availability_zone": "nova:h2"}
    assert client.post("/v2.1/servers", json={"server": server},
                       headers={**world.a.headers, **_v("2.37")}).status_code == 403
    for body in (server, {**server, "availability_zone": "nova::h2"}):
        resp = client.post("/v2.1/servers", json={"server": body}, headers={**world.admin.headers, **_v("2.37")})
        assert resp.status_code == 202, resp.get_data(as_text=True)
    assert [ctx["requested_host"] for ctx in booted] == ["h2", "h2"]
    both = {**server, "host": "h2"}
    assert client.post("/v2.1/servers", json={"server": both},
                       headers={**world.admin.headers, **_v("2.74")}).status_code == 400


# --- 2.23: /servers/{id}/migrations lists the in-progress live migrations -----------------------------------------

def test_server_migrations_from_2_23(client, world):
    from core.db import write_session
    from core.models import Migration
    with write_session() as s:
        running = Migration(instance_uuid=world.server_id, migration_type="live-migration", status="running",
                            source_compute="h1", dest_compute="h2", user_id=world.a.user_id,
                            project_id=world.a.project_id)
        done = Migration(instance_uuid=world.server_id, migration_type="live-migration", status="completed")
        resize = Migration(instance_uuid=world.server_id, migration_type="resize", status="running")
        s.add_all([running, done, resize])
        s.flush()
        running_id, done_id = running.id, done.id
    url = f"/v2.1/servers/{world.server_id}/migrations"
    assert client.get(url, headers={**world.admin.headers, **_v("2.22")}).status_code == 404
    assert client.get(url, headers={**world.a.headers, **_v("2.23")}).status_code == 403
    listed = client.get(url, headers={**world.admin.headers, **_v("2.23")}).get_json()["migrations"]
    assert [(m["id"], m["server_uuid"], m["dest_compute"]) for m in listed] == [(running_id, world.server_id, "h2")]
    assert "uuid" not in listed[0] and "user_id" not in listed[0]
    shown = client.get(f"{url}/{running_id}", headers={**world.admin.headers, **_v("2.80")}).get_json()["migration"]
    assert shown["user_id"] == world.a.user_id and shown["uuid"]
    gone = client.get(f"{url}/{done_id}", headers={**world.admin.headers, **_v("2.23")})
    assert gone.status_code == 404
    # os-migrations links to this resource for in-progress live migrations
    links = client.get("/v2.1/os-migrations", headers={**world.admin.headers, **_v("2.23")}).get_json()
    href = next(m["links"][0]["href"] for m in links["migrations"] if m["id"] == running_id)
    assert href.endswith(f"/v2.1/servers/{world.server_id}/migrations/{running_id}")


# --- 2.44: the nova-network server actions are gone --------------------------------------------------------------

def test_network_actions_404_from_2_44(client, world):
    url = f"/v2.1/servers/{world.server_id}/action"
    body = {"addFloatingIp": {"address": "10.0.0.9"}}
    old = client.post(url, json=body, headers={**world.a.headers, **_v("2.43")})
    assert old.status_code == 400 and "no such action" in old.get_json()["badRequest"]["message"]
    assert client.post(url, json=body, headers={**world.a.headers, **_v("2.44")}).status_code == 404


# --- 2.84: details of failed instance action events -------------------------------------------------------------

def test_failed_event_details_from_2_84(client, world):
    from core.db import read_session, write_session
    from core.models import InstanceAction
    from core.writes import instances
    with read_session() as s:
        request_id = s.scalars(select(InstanceAction.request_id)
                               .where(InstanceAction.instance_uuid == world.server_id)).one()
    with write_session() as s:
        instances.record_event(s, world.server_id, request_id, "compute__do_build_and_run_instance", None, "Error",
                               host="h1", traceback="Traceback ...", details="No valid host was found.")
    url = f"/v2.1/servers/{world.server_id}/os-instance-actions/{request_id}"
    old = client.get(url, headers={**world.a.headers, **_v("2.83")}).get_json()["instanceAction"]["events"]
    assert old and "details" not in old[0]
    new = client.get(url, headers={**world.a.headers, **_v("2.84")}).get_json()["instanceAction"]["events"]
    assert new[-1]["details"] == "No valid host was found." and "traceback" not in new[-1]


# --- 2.63: trusted_image_certificates ------------------------------------------------------------------------------

def test_trusted_image_certificates_refused_not_ignored(client, world):
    server = {"name": "certs", "imageRef": world.image_id, "flavorRef": world.flavor_id, "networks": "none",
              "trusted_image_certificates": ["0b5d2c72-12cc-4ba6-a8d7-3ff5cc1d8cb8"]}
    old = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **_v("2.62")})
    assert "'trusted_image_certificates' was unexpected" in old.get_json()["badRequest"]["message"]
    new = client.post("/v2.1/servers", json={"server": server}, headers={**world.a.headers, **_v("2.63")})
    assert new.status_code == 400 and "does not verify image signatures" in new.get_json()["badRequest"]["message"]
    none = {**server, "trusted_image_certificates": None}
    assert client.post("/v2.1/servers", json={"server": none}, headers={**world.a.headers, **_v("2.63")}).status_code \
        == 202
    shown = client.get(f"/v2.1/servers/{world.server_id}", headers={**world.a.headers, **_v("2.63")}).get_json()
    assert shown["server"]["trusted_image_certificates"] is None


# --- 2.31: os-console-auth-tokens for every console type --------------------------------------------------------

def test_console_auth_token_lookup_from_2_31(client, world):
    import time

    from core.crypto import token_hash
    from core.db import write_session
    from core.models import ConsoleAuthToken
    with write_session() as s:
        s.add(ConsoleAuthToken(token_hash=token_hash("live"), console_type="novnc", host="10.0.0.5", port=5901,
                               instance_uuid=world.server_id, expires=int(time.time()) + 600))
        s.add(ConsoleAuthToken(token_hash=token_hash("old"), console_type="novnc", host="10.0.0.5", port=5902,
                               instance_uuid=world.server_id, expires=int(time.time()) - 1))
    url = "/v2.1/os-console-auth-tokens/"
    assert client.get(url + "live", headers={**world.a.headers, **_v("2.31")}).status_code == 403
    assert client.get(url + "live", headers={**world.admin.headers, **_v("2.30")}).status_code == 401  # RDP only
    shown = client.get(url + "live", headers={**world.admin.headers, **_v("2.31")})
    assert shown.status_code == 200 and shown.get_json()["console"] == {
        "instance_uuid": world.server_id, "host": "10.0.0.5", "port": 5901, "internal_access_path": None}
    for token in ("old", "nope"):
        assert client.get(url + token, headers={**world.admin.headers, **_v("2.31")}).status_code == 404


def test_live_migration_in_flight_is_listed(client, world, monkeypatch):
    from core.db import write_session
    from core.models import Service, utcnow
    from tasks.conductor import live
    _hosts()
    with write_session() as s:
        s.scalars(select(Service).where(Service.host == "h1")).one().last_seen_at = utcnow()
    _set_instance(world.server_id, vm_state="active", task_state=None, host="h1", node="h1")
    monkeypatch.setattr(live, "run_ops", lambda ctx: None)
    moved = client.post(f"/v2.1/servers/{world.server_id}/action",
                        json={"os-migrateLive": {"host": None, "block_migration": "auto"}},
                        headers={**world.admin.headers, **_v("2.25")})
    assert moved.status_code == 202, moved.get_data(as_text=True)
    listed = client.get(f"/v2.1/servers/{world.server_id}/migrations",
                        headers={**world.admin.headers, **_v("2.23")}).get_json()["migrations"]
    assert [(m["status"], m["source_compute"], m["dest_compute"]) for m in listed] == [("queued", "h1", "h2")]


# --- 2.81: pre-cache images on an aggregate's hosts --------------------------------------------------------------

def test_aggregate_image_cache_from_2_81(client, world, monkeypatch):
    from tasks.messaging import rpc
    _hosts()
    casts: list[tuple] = []
    monkeypatch.setattr(rpc, "cast", lambda name, *args, queue: casts.append((name, args, queue)))
    admin = {**world.admin.headers, **_v("2.81")}
    agg = client.post("/v2.1/os-aggregates", json={"aggregate": {"name": "cache-me"}}, headers=admin).get_json()
    agg_id = agg["aggregate"]["id"]
    for host in ("h1", "h2"):
        added = client.post(f"/v2.1/os-aggregates/{agg_id}/action", json={"add_host": {"host": host}}, headers=admin)
        assert added.status_code == 200, added.get_data(as_text=True)
    url = f"/v2.1/os-aggregates/{agg_id}/images"
    body = {"cache": [{"id": world.image_id}]}
    assert client.post(url, json=body, headers={**world.admin.headers, **_v("2.80")}).status_code == 404
    assert client.post(url, json=body, headers={**world.a.headers, **_v("2.81")}).status_code == 403
    for bad in ({"cache": []}, {"cache": [{"id": world.image_id}, {"id": world.image_id}]},
                {"cache": [{"id": "0b5d2c72-12cc-4ba6-a8d7-3ff5cc1d8cb8"}]}, {"cache": [{"id": "x"}]}):
        assert client.post(url, json=bad, headers=admin).status_code == 400, bad
    assert client.post("/v2.1/os-aggregates/999/images", json=body, headers=admin).status_code == 404
    assert casts == []
    resp = client.post(url, json=body, headers=admin)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    # compute hosts read no DB: the image goes as the driver needs it (id, formats, size, checksum, properties)
    assert [(name, args[0], [i["id"] for i in args[1]], queue) for name, args, queue in sorted(casts)] == [
        ("stratus.compute.cache_images", h, [world.image_id], f"compute.{h}") for h in ("h1", "h2")]
    assert {"disk_format", "container_format", "size", "checksum", "properties"} <= set(casts[0][1][1][0])


def test_compute_cache_images_task_uses_the_driver(world, monkeypatch):
    import uuid

    from drivers.fake import FakeDriver
    from tasks import compute
    drv = FakeDriver(f"cache-{uuid.uuid4().hex[:6]}")
    monkeypatch.setattr(compute, "driver_for", lambda host: drv)
    from core.db import read_session
    from tasks.conductor.specs import image_message
    with read_session() as s:
        image = image_message(s, world.image_id)
    gone = {**image, "id": "0b5d2c72-12cc-4ba6-a8d7-3ff5cc1d8cb8"}  # no data in the store: logged, skipped
    compute.cache_images(drv.host, [image, gone])
    assert drv.cached_images == {world.image_id}
