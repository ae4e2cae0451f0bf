"""Compute hosts on other machines with real guests (issue 25): the controller (API, conductor, scheduler,
metadata service, noVNC proxy; PostgreSQL and a Redis of its own) in the root network namespace, two libvirt
compute hosts each in a network namespace of its own (tests/multihost_support.py: own address on a bridge, own
state dir and instances path, no database URL, the database ports rejected), each with its own libvirt daemon
started inside that namespace (tools/libvirt-node), set up by tools/stratus-node: the node's instance bridge, its
169.254.169.254 DNAT and its metadata proxy live in its namespace and reach the controller only over TCP.

One TCG guest, pinned to host B (availability zone nova:B): it reaches userspace; reads its own metadata at
169.254.169.254 through B's proxy (the controller serves no guest directly); its VNC console opens in headless
Chromium through the noVNC proxy, which connects to B's address; then it is cold-migrated to A, reaches userspace
there and reads its metadata through A's proxy, and B's daemon and instances path no longer have it.
About 2-4 minutes (two TCG boots)."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.stack import console_proxy_env, free_port, wait_port
from tests import multihost_support as multihost
from tests.browser_support import chromium, wait_ink, wait_novnc_status
from tests.libvirt_support import (compute_call, console_count, metadata_sections, private_libvirtd,
                                   require_test_image, upload_test_image, wait_server_status)

pytestmark = [pytest.mark.libvirt, pytest.mark.services, pytest.mark.browser, pytest.mark.slow]

HOSTS = ("ns-a", "ns-b")
BRIDGE = "stratusns0"  # in each host's namespace: no clash with the machine's own stratusbr0
TIMEOUT = 300  # a TCG boot on two shared cores
UP, MD_DONE = "STRATUS-GUEST-UP", "STRATUS-MD-DONE http"


def _domstate(uri: str, uuid: str) -> str:
    r = subprocess.run(["virsh", "-c", uri, "domstate", uuid], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 else "absent"


def _console(api, uuid: str) -> str:
    r = compute_call(api, "POST", f"/servers/{uuid}/action", {"os-getConsoleOutput": {}})
    return r.json()["output"] if r.ok else ""


def _metadata_read(api, stack, uuid: str) -> dict:
    """The guest's console once it read its metadata at 169.254.169.254: the meta_data.json it printed."""
    log = multihost.wait(lambda: (out := _console(api, uuid)) and MD_DONE in out and out, TIMEOUT,
                         f"{uuid} printing {MD_DONE}", stack)
    assert f"{MD_DONE} ok" in log, log[-3000:]
    return json.loads(metadata_sections(log)[("http", "meta_data.json")])


@pytest.fixture
def cloud(request):
    """The controller and two libvirt hosts in namespaces; yields (stack, net, {host: libvirt URI}, {host:
    instances path})."""
    image_dir = require_test_image(("iptables", "ip"), "iptables iproute2", "LIBVIRT HOSTS IN NAMESPACES")
    base = Path(tempfile.mkdtemp(prefix="stratus-nshosts-", dir="/var/tmp"))  # QEMU runs as libvirt-qemu
    os.chmod(base, 0o755)
    cidr = f"10.77.{random.randrange(100, 200)}.0/24"
    proxies, novnc, _ = console_proxy_env()
    failed = request.session.testsfailed
    try:
        with contextlib.ExitStack() as stack_of:
            net = stack_of.enter_context(multihost.host_network(HOSTS))
            uris = {host: stack_of.enter_context(private_libvirtd(host, free_port(), net.hosts[host][1],
                                                                  netns=net.hosts[host][0])) for host in HOSTS}
            st = stack_of.enter_context(multihost.controller(
                net, base / "controller", HOSTS, "nshosts",
                processes=("api", "conductor", "scheduler", "metadata", "novncproxy"),
                extra_env={"STRATUS_COMPUTE_DRIVER": "libvirt", "STRATUS_NETWORK_CIDR": cidr,
                           "STRATUS_NETWORK_BRIDGE": BRIDGE, **proxies}))
            instances = {}
            for host in HOSTS:
                node = base / host
                (node / "instances").mkdir(parents=True)
                for path in (node, node / "instances"):
                    os.chmod(path, 0o755)
                instances[host] = node / "instances"
                multihost.start_compute(st, net, host, node, env={
                    "STRATUS_LIBVIRT_URI": uris[host], "STRATUS_INSTANCES_PATH": str(instances[host])})
            st.novnc_port, st.image_dir = novnc, image_dir
            wait_port(novnc)
            yield st, net, uris, instances
    finally:
        if request.session.testsfailed == failed:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"hosts in namespaces: a test failed; the logs are in {base / 'controller'}")


def test_real_guest_on_hosts_in_their_own_namespaces(cloud):
    st, net, uris, instances = cloud
    a, b = HOSTS
    api = multihost.wait_hosts_up(st, HOSTS, timeout=180)
    image, flavor = upload_test_image(api, st.image_dir)

    # (1) boot on B; the guest's NIC is a tap on the bridge of B's namespace
    uuid = multihost.boot_on(api, image, b, "ns-guest", networks="auto", flavor=flavor)
    server = wait_server_status(api, uuid, "ACTIVE", TIMEOUT)
    assert server["OS-EXT-SRV-ATTR:host"] == b, server
    assert _domstate(uris[b], uuid) == "running" and _domstate(uris[a], uuid) == "absent"
    taps = net.run(b, "ip", "-o", "link", "show", "master", BRIDGE)
    assert taps.returncode == 0 and "vnet" in taps.stdout, taps
    assert not os.path.exists(f"/sys/class/net/{BRIDGE}"), "the instance bridge leaked into the root namespace"

    # (2) metadata from inside the guest: 169.254.169.254 -> B's proxy -> the controller over the bridge
    address = server["addresses"]["private"][0]["addr"]
    meta = _metadata_read(api, st, uuid)
    assert meta["uuid"] == uuid and meta["name"] == "ns-guest", meta
    assert console_count(api, uuid, UP) == 1
    assert f"addr={address}/24" in _console(api, uuid)

    # (3) the VNC console in Chromium through the noVNC proxy, which connects to B's address
    url = st.openstack_json("console", "url", "show", "--novnc", uuid)["url"]
    with chromium() as browser:
        browser.get(url)
        assert wait_novnc_status(browser, r"^Connected") == f"Connected to QEMU ({uuid})"
        from selenium.webdriver.common.action_chains import ActionChains
        ActionChains(browser).send_keys("\n").perform()  # the busybox shell prints a prompt on tty0
        assert wait_ink(browser, "canvas") > 0
    target = re.escape(net.hosts[b][1])
    assert re.search(rf"type=novnc instance={uuid} client=\S+ result=accepted target={target}:\d+",
                     st.log("novncproxy")), st.log("novncproxy")[-2000:]

    # (4) cold migration to A: the disk travels through the Image API; the guest boots and reads its metadata
    # through A's proxy; B keeps nothing once the move is confirmed
    r = compute_call(api, "POST", f"/servers/{uuid}/action", {"migrate": {"host": a}}, version="2.56")
    assert r.status_code == 202, r.text
    server = wait_server_status(api, uuid, "VERIFY_RESIZE", TIMEOUT)
    assert server["OS-EXT-SRV-ATTR:host"] == a, server
    assert compute_call(api, "POST", f"/servers/{uuid}/action", {"confirmResize": None}).status_code == 204
    server = wait_server_status(api, uuid, "ACTIVE", TIMEOUT)
    assert server["OS-EXT-SRV-ATTR:host"] == a and _domstate(uris[a], uuid) == "running"
    meta = _metadata_read(api, st, uuid)  # A's console log: this boot only
    assert meta["uuid"] == uuid and console_count(api, uuid, UP) == 1
    multihost.wait(lambda: _domstate(uris[b], uuid) == "absent" and not (instances[b] / uuid).exists(), 60,
                   "B rid of the source guest after confirmResize", st)

    assert api.delete(uuid) == 204
    assert api.wait_gone(TIMEOUT) == []
    assert _domstate(uris[a], uuid) == "absent" and not (instances[a] / uuid).exists()
    for host in HOSTS:
        text = st.log(f"compute-{host}")
        assert "Traceback" not in text and "psycopg" not in text, text[-4000:]
