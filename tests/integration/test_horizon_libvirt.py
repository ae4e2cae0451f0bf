"""Issue 29: Horizon (unmodified, from PyPI) against a Stratus whose compute host runs real QEMU guests through
libvirt: the admin launches the test guest through the Launch Instance wizard, watches it reach Active, and the
instance's Console tab shows the guest's screen through Stratus's noVNC proxy (the canvas inside Horizon's iframe
has ink; screenshot in artifacts/horizon/). Then it is deleted."""
from __future__ import annotations

import pytest
import requests

from harness.stack import ADMIN_PASSWORD, console_proxy_env, wait_port
from tests import horizon_support as hz
from tests.browser_support import chromium, wait_ink
from tests.libvirt_support import libvirt_stack, require_test_image, upload_test_image
from tests.outage_support import Client

pytestmark = [pytest.mark.libvirt, pytest.mark.browser, pytest.mark.slow]
SERVER = "hz-guest"
MARKER = "STRATUS-GUEST-UP"  # the test guest's console line once userspace runs
NO_SECURITY_GROUPS = (r"Unable to retrieve the security groups",)


@pytest.fixture(scope="module")
def stack():
    image_dir = require_test_image(what="HORIZON LIBVIRT TEST")
    env, novnc, _ = console_proxy_env()
    with libvirt_stack("horizon", "horizon-1", extra_env=env,
                       processes=("api", "conductor", "scheduler", "compute", "novncproxy")) as st:
        wait_port(novnc)
        st.image, st.flavor = upload_test_image(Client(st), image_dir)
        yield st


@pytest.fixture(scope="module")
def horizon(stack):
    hz.install()
    with hz.serve(f"{stack.url}/identity/v3", "libvirt") as h:
        yield h


def test_launch_and_vnc_console_in_horizon(stack, horizon):
    with chromium() as browser:
        browser.set_window_size(1400, 1000)
        horizon.sign_in(browser, "admin", ADMIN_PASSWORD)
        network = stack.openstack_json("network", "list")[0]["ID"]
        hz.launch(browser, horizon, SERVER, stack.image, stack.flavor, network, key_pair=False,
                  allowed_alerts=NO_SECURITY_GROUPS)
        sid = stack.wait_server(SERVER, "ACTIVE", timeout=180)["id"]
        hz.wait_row(browser, horizon, sid, "Active")
        headers = {"X-Auth-Token": stack.admin_token()}
        hz.wait_for(lambda: MARKER in requests.post(f"{stack.url}/v2.1/servers/{sid}/action", headers=headers,
                                                    json={"os-getConsoleOutput": {}}, timeout=30).json()["output"],
                    "the guest up to userspace", browser, timeout=180, every=2)

        horizon.open(browser, f"/project/instances/{sid}/?tab=instance_details__console", "instance console tab")
        frame = browser.find_element("css selector", "iframe#console_embed")
        assert f":{stack.env['STRATUS_NOVNCPROXY_PORT']}/vnc_auto.html" in frame.get_attribute("src")
        browser.switch_to.frame(frame)
        ink = wait_ink(browser, "canvas", timeout=60)
        browser.switch_to.default_content()
        browser.save_screenshot(str(hz.ARTIFACTS / "libvirt-vnc-console.png"))
        assert ink > 0
        assert f"instance={sid} client=127.0.0.1 result=accepted" in stack.log("novncproxy")

        browser.get(f"{horizon.url}/project/instances/")
        hz.row_action(browser, horizon, sid, "delete", "delete requested")
        hz.wait_row(browser, horizon, sid, "", timeout=120)
        stack.wait_server(sid, "DELETED", timeout=120)
