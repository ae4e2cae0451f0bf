"""Bad input gets Nova's error body and code, and leaves no half-written rows."""
from __future__ import annotations

import uuid

import pytest
import requests

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def api(stack):
    token = stack.admin_token()
    session = requests.Session()
    session.headers.update({"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.96"})
    # An image and flavor that are valid, so each case breaks exactly one thing.
    img = session.post(f"{stack.url}/image/v2/images", json={"name": "err-image", "disk_format": "raw",
                                                             "container_format": "bare"}).json()
    session.put(f"{stack.url}/image/v2/images/{img['id']}/file", data=b"x" * 512,
                headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return stack, session, img["id"]


def count_rows(stack, table: str) -> int:
    from sqlalchemy import create_engine, text
    url = stack.env.get("STRATUS_DATABASE_URL") or f"sqlite:///{stack.state_dir / 'stratus.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return c.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    finally:
        engine.dispose()


def server_body(image_id: str, **overrides) -> dict:
    server = {"name": "err-vm", "imageRef": image_id, "flavorRef": "42", "networks": "none", **overrides}
    return {"server": {k: v for k, v in server.items() if v is not None}}


CASES = [
    ("missing flavorRef", lambda img: server_body(img, flavorRef=None), 400, "badRequest", "flavorRef"),
    ("unknown image", lambda img: server_body(str(uuid.uuid4())), 400, "badRequest", "Can not find requested image"),
    ("image not a uuid", lambda img: server_body("not-a-uuid"), 400, "badRequest", "Invalid imageRef"),
    ("unknown flavor", lambda img: server_body(img, flavorRef="no-such-flavor"), 400, "badRequest",
     "Invalid flavorRef"),
    ("unknown field", lambda img: server_body(img, bogus=1), 400, "badRequest", "'bogus' was unexpected"),
    ("networks missing at 2.37+", lambda img: server_body(img, networks=None), 400, "badRequest", "networks"),
    ("bad user_data", lambda img: server_body(img, user_data="%%%not base64"), 400, "badRequest",
     "Invalid input for field/attribute user_data"),
    ("unknown key", lambda img: server_body(img, key_name="nope"), 400, "badRequest", "Invalid key_name"),
    ("empty name", lambda img: server_body(img, name=""), 400, "badRequest", "name"),
]


@pytest.mark.parametrize("label,body,code,fault,text", CASES, ids=[c[0] for c in CASES])
def test_bad_create_bodies(api, label, body, code, fault, text):
    stack, session, image_id = api
    before = (count_rows(stack, "instances"), count_rows(stack, "instance_actions"))
    r = session.post(f"{stack.url}/v2.1/servers", json=body(image_id))
    assert r.status_code == code, r.text
    assert set(r.json()) == {fault}
    assert r.json()[fault]["code"] == code
    assert text in r.json()[fault]["message"]
    assert (count_rows(stack, "instances"), count_rows(stack, "instance_actions")) == before


def test_malformed_json(api):
    stack, session, _ = api
    r = session.post(f"{stack.url}/v2.1/servers", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "badRequest" in r.json()


def test_bad_uuid_is_404(api):
    stack, session, _ = api
    r = session.get(f"{stack.url}/v2.1/servers/not-a-uuid")
    assert r.status_code == 404
    assert r.json() == {"itemNotFound": {"code": 404, "message": "Instance not-a-uuid could not be found."}}


@pytest.mark.parametrize("header,code", [("compute 2.97", 406), ("compute 3.0", 406), ("compute 2.x", 400)])
def test_wrong_microversion(api, header, code):
    stack, session, _ = api
    r = session.get(f"{stack.url}/v2.1/servers", headers={"OpenStack-API-Version": header})
    assert r.status_code == code, r.text
    assert r.json()["computeFault" if code == 406 else "badRequest"]["code"] == code


def test_microversion_echoed(api):
    stack, session, _ = api
    token = session.headers["X-Auth-Token"]
    r = requests.get(f"{stack.url}/v2.1/flavors", headers={"X-Auth-Token": token,
                                                           "X-OpenStack-Nova-API-Version": "2.55"})
    assert r.headers["OpenStack-API-Version"] == "compute 2.55"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.55"
    assert "OpenStack-API-Version" in r.headers["Vary"] and "X-OpenStack-Nova-API-Version" in r.headers["Vary"]
    r = session.get(f"{stack.url}/v2.1/flavors", headers={"OpenStack-API-Version": "compute latest"})
    assert r.headers["OpenStack-API-Version"] == "compute 2.96"


def test_no_token(api):
    stack, _, _ = api
    r = requests.get(f"{stack.url}/v2.1/servers")
    assert r.status_code == 401 and r.json()["error"]["code"] == 401  # keystonemiddleware's body, as in Nova
    assert r.headers["WWW-Authenticate"] == f'Keystone uri="{stack.url}/identity"'


def test_token_of_another_project(api):
    stack, session, image_id = api
    # Another project with a member, through the Identity API as a test client would.
    ident = f"{stack.url}/identity/v3"
    name = f"other-{uuid.uuid4().hex[:6]}"
    project = session.post(f"{ident}/projects", json={"project": {"name": name, "domain_id": "default"}}).json()
    user = session.post(f"{ident}/users", json={"user": {"name": name, "password": "pw-" + name,
                                                          "domain_id": "default"}}).json()
    roles = {r["name"]: r["id"] for r in session.get(f"{ident}/roles").json()["roles"]}
    session.put(f"{ident}/projects/{project['project']['id']}/users/{user['user']['id']}/roles/{roles['member']}"
                ).raise_for_status()
    other = stack.token(name, "pw-" + name, name)

    r = session.post(f"{stack.url}/v2.1/servers", json=server_body(image_id, name="owned-by-admin"))
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    hdrs = {"X-Auth-Token": other}
    assert requests.get(f"{stack.url}/v2.1/servers/{server_id}", headers=hdrs).status_code == 404
    assert requests.delete(f"{stack.url}/v2.1/servers/{server_id}", headers=hdrs).status_code == 404
    r = requests.post(f"{stack.url}/v2.1/servers/{server_id}/action", json={"os-stop": None}, headers=hdrs)
    assert r.status_code == 404
    listed = requests.get(f"{stack.url}/v2.1/servers", headers=hdrs).json()["servers"]
    assert server_id not in {s["id"] for s in listed}
    assert session.delete(f"{stack.url}/v2.1/servers/{server_id}").status_code == 204


def test_rename_and_lock(api):
    stack, session, image_id = api
    r = session.post(f"{stack.url}/v2.1/servers", json=server_body(image_id, name="to-rename"))
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    r = session.put(f"{stack.url}/v2.1/servers/{sid}", json={"server": {"name": "renamed", "description": "d"}})
    assert r.status_code == 200, r.text
    assert r.json()["server"]["name"] == "renamed" and r.json()["server"]["description"] == "d"
    r = session.put(f"{stack.url}/v2.1/servers/{sid}", json={"server": {"bogus": 1}})
    assert r.status_code == 400
    r = session.post(f"{stack.url}/v2.1/servers/{sid}/action", json={"lock": {"locked_reason": "maintenance"}})
    assert r.status_code == 202, r.text
    shown = session.get(f"{stack.url}/v2.1/servers/{sid}").json()["server"]
    assert shown["locked"] is True and shown["locked_reason"] == "maintenance"
    r = session.post(f"{stack.url}/v2.1/servers/{sid}/action", json={"unlock": None})
    assert r.status_code == 202
    assert session.get(f"{stack.url}/v2.1/servers/{sid}").json()["server"]["locked"] is False
    assert session.delete(f"{stack.url}/v2.1/servers/{sid}").status_code == 204


def test_access_ips_cross_the_broker_and_options_is_no_500(api):
    """Issue 28 items 1, 2 against real processes: validated access IPs reach the conductor through the broker
    (kombu refused the ipaddress objects: a 500), and OPTIONS answers Allow."""
    stack, session, image_id = api
    session.post(f"{stack.url}/v2.1/flavors", json={"flavor": {"name": "ips-flavor", "ram": 64, "vcpus": 1,
                                                               "disk": 1, "id": 4242}}).raise_for_status()
    r = session.post(f"{stack.url}/v2.1/servers", json=server_body(
        image_id, name="ips-vm", flavorRef="4242", accessIPv4="192.0.2.9", accessIPv6="2001:db8::9"))
    assert r.status_code == 202, r.text
    server_id = r.json()["server"]["id"]
    try:
        shown = session.get(f"{stack.url}/v2.1/servers/{server_id}").json()["server"]
        assert (shown["accessIPv4"], shown["accessIPv6"]) == ("192.0.2.9", "2001:db8::9")
        options = session.options(f"{stack.url}/v2.1/servers/{server_id}")
        assert options.status_code == 200 and {"GET", "PUT", "DELETE"} <= set(options.headers["Allow"].split(", "))
        refused = session.patch(f"{stack.url}/v2.1/servers/{server_id}", json={})
        assert refused.status_code == 405 and "GET" in refused.headers["Allow"]
    finally:
        session.delete(f"{stack.url}/v2.1/servers/{server_id}")
        session.delete(f"{stack.url}/v2.1/flavors/4242")
