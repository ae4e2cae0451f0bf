"""Compute hosts on other machines (issue 25), each host in its own network namespace: the controller (API,
conductor, scheduler, PostgreSQL, a Redis of its own) is in the root namespace and reachable only at a bridge
address; two compute workers run in namespaces of their own, with their own state directories, no database URL and
the database ports rejected by their firewall, set up by tools/stratus-node. They register, boot, serve metadata
through each host's proxy, print console output, cold-migrate, stop/start, resize across hosts and revert; a host
cut off from the controller goes down in the service list (its servers' host_status UNKNOWN), no build lands
there, it comes back when the partition heals with every guest exactly once; a server is evacuated from a host
forced down; a node is removed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from harness.stack import REPO
from tests import multihost_support as multihost
from tests import netns_support

pytestmark = [pytest.mark.services, pytest.mark.slow]
HOSTS = ("mh-a", "mh-b")
METADATA_PROXY_PORT = 8775  # inside each host's namespace: no clash with the machine's own


def _guest_metadata(net: netns_support.HostNetwork, host: str, guest_address: str) -> tuple[int, str]:
    """GET meta_data.json from host ``host``'s metadata proxy as a guest with ``guest_address`` would (its TCP
    source address): (status, body)."""
    code = ("import http.client, sys\n"
            f"c = http.client.HTTPConnection('127.0.0.1', {METADATA_PROXY_PORT}, timeout=20, "
            f"source_address=('{guest_address}', 0))\n"
            "c.request('GET', '/openstack/latest/meta_data.json')\n"
            "r = c.getresponse()\nprint(r.status)\nprint(r.read().decode())\n")
    done = net.run(host, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.partition("\n")
    return int(status), body


@pytest.fixture
def network():
    with multihost.host_network(HOSTS) as net:
        yield net


def test_compute_hosts_in_their_own_namespaces(network, tmp_path):
    net = network
    with multihost.controller(net, tmp_path / "controller", HOSTS, "multihost") as stack:
        for host in HOSTS:
            multihost.start_compute(stack, net, host, tmp_path / host, env={
                # the namespace has no instance bridge: its metadata proxy listens on every address of the host
                "STRATUS_METADATA_PROXY_BIND": f"0.0.0.0:{METADATA_PROXY_PORT}"})
        api = multihost.wait_hosts_up(stack, HOSTS)

        image = api.image()
        server = multihost.boot_on(api, image, "mh-a", "mh-1", networks="auto")
        settled = api.wait_settled({server}, 90)[server]
        assert settled["status"] == "ACTIVE" and settled["OS-EXT-SRV-ATTR:host"] == "mh-a", settled

        # Metadata through each host's proxy: the guest's address on its own host gets its document; the same
        # address through the other host's proxy (a guest there taking it) gets nothing.
        guest = next(a["addr"] for nets in settled["addresses"].values() for a in nets)
        for host in HOSTS:
            assert net.run(host, "ip", "addr", "add", f"{guest}/32", "dev", "lo").returncode == 0
        status, body = _guest_metadata(net, "mh-a", guest)
        assert status == 200 and json.loads(body)["uuid"] == server, (status, body)
        assert _guest_metadata(net, "mh-b", guest)[0] == 404
        action = f"{api.url}/servers/{server}/action"
        log = requests.post(action, headers=api.headers, json={"os-getConsoleOutput": {"length": 5}}, timeout=60)
        assert log.status_code == 200 and log.json()["output"], log.text

        moved = requests.post(action, headers=api.headers, json={"migrate": {"host": "mh-b"}}, timeout=60)
        assert moved.status_code == 202, moved.text
        resized = api.wait_settled({server}, 90)[server]
        assert resized["status"] == "VERIFY_RESIZE" and resized["OS-EXT-SRV-ATTR:host"] == "mh-b", resized
        confirmed = requests.post(action, headers=api.headers, json={"confirmResize": None}, timeout=60)
        assert confirmed.status_code == 204, confirmed.text
        assert api.wait_settled({server}, 90)[server]["status"] == "ACTIVE"

        def post(body: dict, version: str = "2.96") -> requests.Response:
            return requests.post(action, json=body, timeout=60,
                                 headers={**api.headers, "OpenStack-API-Version": f"compute {version}"})

        def settle(expected: str, host: str) -> None:
            shown = api.wait_settled({server}, 90)[server]
            assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"]) == (expected, host), shown

        assert post({"os-stop": None}).status_code == 202
        settle("SHUTOFF", "mh-b")
        assert post({"os-start": None}).status_code == 202
        settle("ACTIVE", "mh-b")
        # snapshot on mh-b (uploaded through the Image API), then boot it on mh-a (downloaded the same way)
        snap = post({"createImage": {"name": "mh-snap"}})
        assert snap.status_code == 202, snap.text
        snap_id = snap.json()["image_id"]
        multihost.wait(lambda: requests.get(f"{stack.url}/image/v2/images/{snap_id}", headers=api.headers,
                                            timeout=30).json()["status"] == "active", 90, "the snapshot active", stack)
        settle("ACTIVE", "mh-b")
        from_snap = multihost.boot_on(api, snap_id, "mh-a", "mh-from-snap")
        assert api.wait_settled({from_snap}, 90)[from_snap]["status"] == "ACTIVE"
        assert (stack.state_dir.parent / "mh-a" / "state" / "image-cache" / snap_id).is_file()
        assert api.delete(from_snap) == 204
        # resize moves it to the other host (not to its own: allow_resize_to_same_host is off); revert brings it back
        assert post({"resize": {"flavorRef": "84"}}).status_code == 202
        settle("VERIFY_RESIZE", "mh-a")
        assert post({"revertResize": None}).status_code == 202
        settle("ACTIVE", "mh-b")

        # Partition: mh-b cannot reach the controller (broker, API) and the controller cannot reach it.
        cut = ["OUTPUT", "-d", net.controller, "-j", "DROP"]
        assert net.run("mh-b", "iptables", "-I", *cut).returncode == 0
        multihost.wait(lambda: multihost.service(api, "mh-b")["state"] == "down", 60, "mh-b down while cut off",
                       stack)
        shown = requests.get(f"{api.url}/servers/{server}", headers=api.headers, timeout=30).json()["server"]
        assert shown["host_status"] == "UNKNOWN" and shown["status"] == "ACTIVE", shown
        assert multihost.service(api, "mh-a")["state"] == "up"
        meanwhile = api.boot(image, "mh-meanwhile")  # no build lands on the host that is down
        assert meanwhile.status_code == 202, meanwhile.text
        meanwhile_id = meanwhile.json()["server"]["id"]
        landed = api.wait_settled({meanwhile_id}, 90)[meanwhile_id]
        assert (landed["status"], landed["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "mh-a"), landed
        assert net.run("mh-b", "iptables", "-D", *cut).returncode == 0
        multihost.wait(lambda: multihost.service(api, "mh-b")["state"] == "up", 90,
                       "mh-b up after the partition healed", stack)
        again = multihost.boot_on(api, image, "mh-b", "mh-2")
        assert api.wait_settled({again}, 90)[again]["status"] == "ACTIVE"
        # every guest exactly once, on the host its row names (the fake driver's guests are files on each host)
        for host, expected in (("mh-a", {meanwhile_id}), ("mh-b", {server, again})):
            guests = {p.stem for p in (stack.state_dir.parent / host / "state" / "fake-guests").rglob("*.json")}
            assert guests == expected, (host, guests)

        # Evacuate from a host an operator forced down: rebuilt on the other (stopped, as from 2.95)
        mh_b = multihost.service(api, "mh-b")["id"]
        forced = requests.put(f"{api.url}/os-services/{mh_b}", json={"forced_down": True}, timeout=30,
                              headers={**api.headers, "OpenStack-API-Version": "compute 2.53"})
        assert forced.status_code == 200, forced.text
        assert post({"evacuate": {}}).status_code == 200
        settle("SHUTOFF", "mh-a")
        requests.put(f"{api.url}/os-services/{mh_b}", json={"forced_down": False}, timeout=30,
                     headers={**api.headers, "OpenStack-API-Version": "compute 2.53"}).raise_for_status()

        for sid in (server, again, meanwhile_id):
            assert api.delete(sid) == 204
        assert not api.wait_gone(60)
        for host in HOSTS:
            text = stack.log(f"compute-{host}")
            assert "Traceback" not in text and "psycopg" not in text, text[-4000:]

        # Removing a node (README): stop its worker, then remove-compute deletes its service and broker user.
        stack.stop_process("compute-mh-b")
        removed = subprocess.run([str(REPO / "tools/stratus-node"), "remove-compute", "mh-b"], cwd=REPO,
                                 env=stack.env, capture_output=True, text=True, timeout=120)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        r = requests.get(f"{api.url}/os-services", params={"binary": "nova-compute"}, headers=api.headers, timeout=30)
        assert [s["host"] for s in r.json()["services"]] == ["mh-a"], r.text
        import redis as redis_client
        with redis_client.Redis.from_url(stack.redis.url) as admin:
            assert b"compute-mh-b" not in admin.execute_command("ACL", "USERS")
