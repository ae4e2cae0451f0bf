"""Admin APIs with the unmodified openstack CLI and openstacksdk: aggregates and zones, flavor access and extra
specs, usage, hypervisor statistics, service deletion, migrations."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

# One backend: these are API-breadth scenarios (SQLite and MariaDB run the other scenario modules).
pytestmark = [pytest.mark.services, pytest.mark.backends("postgresql-redis")]


def make_member(stack, role: str = "member") -> tuple[str, str, str]:
    """A new project with one user holding ``role`` on it: (name = user = project, password, project id)."""
    token = stack.admin_token()
    ident, hdrs = f"{stack.url}/identity/v3", {"X-Auth-Token": token}
    name = f"adm-{uuid.uuid4().hex[:6]}"
    project = requests.post(f"{ident}/projects", json={"project": {"name": name, "domain_id": "default"}},
                            headers=hdrs).json()["project"]
    user = requests.post(f"{ident}/users", json={"user": {"name": name, "password": "pw-" + name,
                                                          "domain_id": "default"}}, headers=hdrs).json()["user"]
    roles = {r["name"]: r["id"] for r in requests.get(f"{ident}/roles", headers=hdrs).json()["roles"]}
    requests.put(f"{ident}/projects/{project['id']}/users/{user['id']}/roles/{roles[role]}",
                 headers=hdrs).raise_for_status()
    return name, "pw-" + name, project["id"]


def sdk(stack, user: str = "admin", password: str | None = None, project: str = "admin"):
    import openstack
    env = stack.os_env(user, project=project, **({} if password is None else {"password": password}))
    return openstack.connect(auth_url=env["OS_AUTH_URL"], username=user, password=env["OS_PASSWORD"],
                             project_name=project, user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne")


def api(stack, version: str = "2.96", token: str | None = None) -> requests.Session:
    s = requests.Session()
    s.headers.update({"X-Auth-Token": token or stack.admin_token(), "OpenStack-API-Version": f"compute {version}"})
    return s


def test_aggregates_zones_and_extra_specs_scheduling(stack, image):
    agg = stack.openstack_json("aggregate", "create", "--zone", "az-ssd", "agg-ssd")
    assert agg["availability_zone"] == "az-ssd" and agg["name"] == "agg-ssd"
    servers = []
    try:
        stack.openstack("aggregate", "add", "host", "agg-ssd", "fake-1")
        stack.openstack("aggregate", "set", "--property", "ssd=true", "agg-ssd")
        shown = stack.openstack_json("aggregate", "show", "agg-ssd")
        assert shown["hosts"] == ["fake-1"]
        assert shown["properties"] == {"ssd": "true"} or shown["properties"].get("ssd") == "true"

        zones = {z["Zone Name"]: z for z in stack.openstack_json("availability", "zone", "list", "--compute")}
        assert "az-ssd" in zones and "nova" in zones  # fake-1 moved to az-ssd, fake-2 stays in nova
        detail = api(stack).get(f"{stack.url}/v2.1/os-availability-zone/detail").json()["availabilityZoneInfo"]
        hosts = {z["zoneName"]: set(z["hosts"] or {}) for z in detail}
        assert hosts["az-ssd"] == {"fake-1"} and "fake-1" not in hosts["nova"]
        svc = {s["Host"]: s for s in stack.openstack_json("compute", "service", "list")}
        assert svc["fake-1"]["Zone"] == "az-ssd"

        # A host may be in one zone only (409), unknown hosts are 404, bad bodies 400.
        stack.openstack("aggregate", "create", "--zone", "az-other", "agg-other")
        proc = stack.openstack("aggregate", "add", "host", "agg-other", "fake-1", check=False)
        assert proc.returncode != 0 and "409" in proc.stderr and "availability zone" in proc.stderr
        proc = stack.openstack("aggregate", "add", "host", "agg-other", "no-such-host", check=False)
        assert proc.returncode != 0 and "404" in proc.stderr
        s = api(stack, "2.41")
        agg_id = shown["id"]
        r = s.post(f"{stack.url}/v2.1/os-aggregates/{agg_id}/action", json={"add_host": {"host": "fake-1"}})
        assert r.status_code == 409 and "already has host" in r.json()["conflictingRequest"]["message"]
        r = s.post(f"{stack.url}/v2.1/os-aggregates", json={"aggregate": {"name": "x", "bogus": 1}})
        assert r.status_code == 400 and "badRequest" in r.json()
        r = s.post(f"{stack.url}/v2.1/os-aggregates", json={"aggregate": {"name": "agg-ssd"}})
        assert r.status_code == 409
        r = s.post(f"{stack.url}/v2.1/os-aggregates/{agg_id}/action",
                   json={"set_metadata": {"metadata": {"bad/key": "x"}}})
        assert r.status_code == 400
        body = s.get(f"{stack.url}/v2.1/os-aggregates/{agg_id}").json()["aggregate"]
        assert body["uuid"] and body["metadata"] == {"availability_zone": "az-ssd", "ssd": "true"}
        assert "uuid" not in api(stack, "2.40").get(f"{stack.url}/v2.1/os-aggregates/{agg_id}").json()["aggregate"]
        r = s.delete(f"{stack.url}/v2.1/os-aggregates/{agg_id}")
        assert r.status_code == 400  # not empty

        name, password, _ = make_member(stack)
        proc = stack.openstack("aggregate", "list", user=name, password=password, project=name, check=False)
        assert proc.returncode != 0 and "403" in proc.stderr
        import openstack.exceptions as sdk_exc
        with pytest.raises(sdk_exc.ForbiddenException):
            sdk(stack, name, password, name).compute.create_aggregate(name="by-member")

        # openstacksdk: the same API through its proxy calls.
        conn = sdk(stack)
        other = conn.compute.find_aggregate("agg-other")
        other = conn.compute.set_aggregate_metadata(other, {"pinned": "yes"})
        assert other.metadata["pinned"] == "yes" and other.availability_zone == "az-other"
        conn.compute.add_host_to_aggregate(other, "fake-2")
        assert conn.compute.get_aggregate(other.id).hosts == ["fake-2"]
        with pytest.raises(sdk_exc.NotFoundException):
            conn.compute.remove_host_from_aggregate(other, "fake-1")
        conn.compute.remove_host_from_aggregate(other, "fake-2")
        zones = {z["Zone Name"] for z in stack.openstack_json("availability", "zone", "list", "--compute")}
        assert "az-other" not in zones  # a zone without hosts is not listed (Nova)

        # The scheduler honours aggregate zones and aggregate_instance_extra_specs.
        stack.openstack("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "--property",
                        "aggregate_instance_extra_specs:ssd=true", "fl-ssd")
        for i in range(2):
            zone = ("--availability-zone", "az-ssd") if i else ()
            stack.openstack("server", "create", "--image", image, "--flavor", "fl-ssd", *zone, f"ssd-vm-{i}")
            srv = stack.wait_server(f"ssd-vm-{i}", "ACTIVE")
            servers.append(srv["id"])
            assert srv["OS-EXT-SRV-ATTR:host"] == "fake-1"
            assert srv["OS-EXT-AZ:availability_zone"] == "az-ssd"
        proc = stack.openstack("aggregate", "set", "--zone", "az-moved", "agg-ssd", check=False)
        assert proc.returncode != 0 and "contain instances in this zone" in proc.stderr
        stack.openstack("server", "create", "--image", image, "--flavor", "m1.nano", "--availability-zone", "nova",
                        "nova-vm")
        srv = stack.wait_server("nova-vm", "ACTIVE")
        servers.append(srv["id"])
        assert srv["OS-EXT-SRV-ATTR:host"] == "fake-2"
        stack.openstack("server", "create", "--image", image, "--flavor", "fl-ssd", "--availability-zone", "nova",
                        "no-ssd-in-nova")
        failed = stack.wait_server("no-ssd-in-nova", "ERROR")  # fl-ssd needs an ssd host and nova has none
        assert "No valid host" in failed["fault"]["message"]
        servers.append(failed["id"])
        proc = stack.openstack("server", "create", "--image", image, "--flavor", "m1.nano", "--availability-zone",
                               "az-nowhere", "bad-zone-vm", check=False)
        assert proc.returncode != 0 and "400" in proc.stderr
    finally:
        for sid in servers:
            stack.openstack("server", "delete", sid, check=False)
        for sid in servers:
            stack.wait_server(sid, "DELETED")
        stack.openstack("flavor", "delete", "fl-ssd", check=False)
        stack.openstack("aggregate", "remove", "host", "agg-ssd", "fake-1", check=False)
        stack.openstack("aggregate", "delete", "agg-ssd", "agg-other", check=False)
    assert "agg-ssd" not in stack.openstack("aggregate", "list", "-f", "value", "-c", "Name").stdout


def test_private_flavors_access_and_extra_specs(stack, image):
    image_id = stack.openstack_json("image", "show", image)["id"]
    name, password, project_id = make_member(stack)
    as_member = {"user": name, "password": password, "project": name}
    stack.openstack("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1", "--private", "fl-private")
    try:
        assert "fl-private" not in stack.openstack("flavor", "list", "-f", "value", "-c", "Name", **as_member).stdout
        assert stack.openstack("flavor", "show", "fl-private", check=False, **as_member).returncode != 0
        flavor_id = stack.openstack_json("flavor", "show", "fl-private")["id"]
        member_api = api(stack, token=stack.token(name, password, name))
        boot = {"server": {"name": "priv-vm", "imageRef": image_id, "flavorRef": flavor_id, "networks": "none"}}
        r = member_api.post(f"{stack.url}/v2.1/servers", json=boot)
        assert r.status_code == 400 and "flavorRef" in r.json()["badRequest"]["message"]
        stack.openstack("flavor", "set", "--project", project_id, "fl-private")
        assert "fl-private" in stack.openstack("flavor", "list", "-f", "value", "-c", "Name", **as_member).stdout
        r = member_api.post(f"{stack.url}/v2.1/servers", json=boot)
        assert r.status_code == 202, r.text
        assert member_api.delete(f"{stack.url}/v2.1/servers/{r.json()['server']['id']}").status_code == 204
        access = stack.openstack_json("flavor", "show", "fl-private")
        assert access["access_project_ids"] == [project_id]
        # Members may not change flavors.
        proc = stack.openstack("flavor", "set", "--property", "k=v", "fl-private", check=False, **as_member)
        assert proc.returncode != 0 and "403" in proc.stderr

        stack.openstack("flavor", "set", "--property", "hw:cpu_policy=dedicated", "--property", "color=blue",
                        "fl-private")
        shown = stack.openstack_json("flavor", "show", "fl-private")
        assert shown["properties"] == {"hw:cpu_policy": "dedicated", "color": "blue"}
        stack.openstack("flavor", "unset", "--property", "color", "fl-private")
        stack.openstack("--os-compute-api-version", "2.55", "flavor", "set", "--description", "tiny and private",
                        "fl-private")
        s = api(stack)
        body = s.get(f"{stack.url}/v2.1/flavors/{shown['id']}").json()["flavor"]
        assert body["description"] == "tiny and private" and body["extra_specs"] == {"hw:cpu_policy": "dedicated"}
        assert "extra_specs" not in api(stack, "2.60").get(f"{stack.url}/v2.1/flavors/{shown['id']}").json()["flavor"]
        base = f"{stack.url}/v2.1/flavors/{shown['id']}"
        assert s.post(f"{base}/os-extra_specs", json={"extra_specs": {"bad/key": "x"}}).status_code == 400
        assert s.put(f"{base}/os-extra_specs/a", json={"b": "1"}).status_code == 400
        assert s.get(f"{base}/os-extra_specs/nope").status_code == 404
        assert s.put(f"{base}/os-extra_specs/a", json={"a": 1}).json() == {"a": "1"}
        assert s.get(f"{base}/os-extra_specs/a").json() == {"a": "1"}
        assert s.delete(f"{base}/os-extra_specs/a").status_code == 200
        assert api(stack, "2.54").put(base, json={"flavor": {"description": "x"}}).status_code == 404
        r = s.post(f"{base}/action", json={"addTenantAccess": {"tenant": project_id}})
        assert r.status_code == 409
        r = s.post(f"{stack.url}/v2.1/flavors/1/action", json={"addTenantAccess": {"tenant": project_id}})
        assert r.status_code == 409 and "public flavor" in r.json()["conflictingRequest"]["message"]
        assert s.get(f"{stack.url}/v2.1/flavors/1/os-flavor-access").status_code == 404
        r = s.post(f"{base}/action", json={"removeTenantAccess": {"tenant": project_id}})
        assert r.status_code == 200 and r.json() == {"flavor_access": []}
        assert s.post(f"{base}/action", json={"removeTenantAccess": {"tenant": project_id}}).status_code == 404
    finally:
        stack.openstack("flavor", "delete", "fl-private", check=False)


def test_usage_hypervisor_stats_services_and_migrations(stack, image):
    stack.openstack("server", "create", "--image", image, "--flavor", "m1.nano", "usage-vm")
    srv = stack.wait_server("usage-vm", "ACTIVE")
    try:
        time.sleep(1)
        usage = stack.openstack_json("usage", "list", "--start", "2020-01-01", "--end", "2100-01-01")
        admin_row = next(u for u in usage if (len(u["Servers"]) if isinstance(u["Servers"], list)
                                              else int(u["Servers"])) >= 1)
        assert float(admin_row["RAM MB-Hours"]) > 0
        s = api(stack)
        body = s.get(f"{stack.url}/v2.1/os-simple-tenant-usage/{srv['tenant_id']}",
                     params={"start": "2020-01-01T00:00:00", "end": "2100-01-01T00:00:00"}).json()["tenant_usage"]
        mine = next(u for u in body["server_usages"] if u["instance_id"] == srv["id"])
        assert mine["memory_mb"] == 128 and mine["vcpus"] == 1 and mine["state"] == "active" and mine["hours"] > 0
        assert body["total_memory_mb_usage"] >= 128 * mine["hours"]
        r = s.get(f"{stack.url}/v2.1/os-simple-tenant-usage", params={"start": "2100-01-01", "end": "2020-01-01"})
        assert r.status_code == 400

        stats = stack.openstack_json("hypervisor", "stats", "show")
        assert stats["count"] == 2 and stats["running_vms"] >= 1 and stats["vcpus"] == 32
        assert api(stack, "2.88").get(f"{stack.url}/v2.1/os-hypervisors/statistics").status_code == 404
        hyps = s.get(f"{stack.url}/v2.1/os-hypervisors", params={"with_servers": "true"}).json()["hypervisors"]
        hosted = [h for h in hyps if any(x["uuid"] == srv["id"] for x in h.get("servers", []))]
        assert len(hosted) == 1
        old = api(stack, "2.52").get(f"{stack.url}/v2.1/os-hypervisors/{srv['OS-EXT-SRV-ATTR:host']}/servers")
        assert old.status_code == 200 and old.json()["hypervisors"][0]["servers"][0]["uuid"] == srv["id"]

        services = {x["Host"]: x for x in stack.openstack_json("compute", "service", "list")}
        busy = services[srv["OS-EXT-SRV-ATTR:host"]]
        proc = stack.openstack("compute", "service", "delete", str(busy["ID"]), check=False)
        assert proc.returncode != 0 and "409" in proc.stderr or "hosting instances" in proc.stderr
        idle = next(x for h, x in services.items() if h != srv["OS-EXT-SRV-ATTR:host"])
        stack.openstack("--os-compute-api-version", "2.53", "compute", "service", "delete", str(idle["ID"]))
        assert api(stack, "2.53").delete(f"{stack.url}/v2.1/os-services/{idle['ID']}").status_code == 404
        name, password, _ = make_member(stack)
        proc = stack.openstack("compute", "service", "delete", str(busy["ID"]), user=name, password=password,
                               project=name, check=False)
        assert proc.returncode != 0 and "403" in proc.stderr
        # the compute worker registers its host again with its next full report (every 20 intervals of 2 s)
        deadline = time.monotonic() + 75
        while stack.registered_hosts() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert stack.registered_hosts() == 2

        assert stack.openstack_json("server", "migration", "list") == []
        _make_migrations(stack, srv)
        listed = stack.openstack_json("--os-compute-api-version", "2.80", "server", "migration", "list")
        assert len(listed) == 3
        m = api(stack, "2.80").get(f"{stack.url}/v2.1/os-migrations", params={"limit": 2}).json()
        assert len(m["migrations"]) == 2 and m["migrations_links"]
        assert {"uuid", "user_id", "project_id", "migration_type"} <= set(m["migrations"][0])
        rest = api(stack, "2.80").get(f"{stack.url}/v2.1/os-migrations",
                                      params={"limit": 2, "marker": m["migrations"][1]["uuid"]}).json()
        assert len(rest["migrations"]) == 1 and "migrations_links" not in rest
        by_status = {m["status"]: m for m in api(stack, "2.80").get(f"{stack.url}/v2.1/os-migrations").json()[
            "migrations"]}
        assert set(by_status) == {"confirmed", "completed", "reverted"}, by_status
        assert by_status["completed"]["migration_type"] == "live-migration"
        assert by_status["reverted"]["migration_type"] == "resize"
        assert by_status["reverted"]["old_instance_type_id"] != by_status["reverted"]["new_instance_type_id"]
        done = api(stack, "2.80").get(f"{stack.url}/v2.1/os-migrations", params={"status": "completed"}).json()
        assert len(done["migrations"]) == 1
        old = api(stack, "2.1").get(f"{stack.url}/v2.1/os-migrations").json()["migrations"][0]
        assert "uuid" not in old and "migration_type" not in old
        assert api(stack, "2.80").get(f"{stack.url}/v2.1/os-migrations",
                                      params={"marker": str(uuid.uuid4())}).status_code == 400
    finally:
        stack.openstack("server", "delete", srv["id"], check=False)
        stack.wait_server(srv["id"], "DELETED")


def _make_migrations(stack, srv: dict) -> None:
    """Three real moves of ``srv``: a cold migration (confirmed), a live migration (completed) and a resize that is
    reverted (reverted)."""
    def wait_status(status: str) -> dict:
        return stack.wait_server(srv["id"], status, timeout=90)

    stack.openstack("server", "migrate", srv["id"])
    wait_status("VERIFY_RESIZE")
    stack.openstack("server", "resize", "confirm", srv["id"])
    here = wait_status("ACTIVE")["OS-EXT-SRV-ATTR:host"]
    other = next(h for h in ("fake-1", "fake-2") if h != here)
    r = api(stack, "2.30").post(f"{stack.url}/v2.1/servers/{srv['id']}/action",
                                json={"os-migrateLive": {"host": other, "block_migration": "auto"}})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 90
    while stack.wait_server(srv["id"], "ACTIVE", "MIGRATING")["OS-EXT-SRV-ATTR:host"] != other:
        assert time.monotonic() < deadline, "live migration did not finish"
        time.sleep(0.5)
    wait_status("ACTIVE")
    stack.openstack("server", "resize", "--flavor", "m1.micro", srv["id"])
    wait_status("VERIFY_RESIZE")
    stack.openstack("server", "resize", "revert", srv["id"])
    wait_status("ACTIVE")
