"""Issue 29: Horizon (unmodified, from PyPI) against a Stratus whose compute host runs real QEMU guests through
libvirt: the admin launches the test guest through the Launch Instance wizard, watches it reach Active, and the
instance's Console tab shows the guest's screen through Stratus's noVNC proxy (the canvas inside Horizon's iframe
has ink; screenshot in artifacts/horizon/). A second Horizon, its CONSOLE_TYPE "SERIAL", shows the same guest's
serial console in its own terminal page (term.js on a WebSocket to Stratus's serial proxy, subprotocol "binary"):
the shell's prompt, and a command typed into it runs. Then the guest is deleted."""
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
                       processes=("api", "conductor", "scheduler", "compute", "novncproxy", "serialproxy")) as st:
        wait_port(novnc)
        wait_port(int(env["STRATUS_SERIALPROXY_PORT"]))
        st.image, st.flavor = upload_test_image(Client(st), image_dir)
        yield st


@pytest.fixture(scope="module")
def horizon(stack):
    hz.install()
    with hz.serve(f"{stack.url}/identity/v3", "libvirt") as h:
        yield h


# The terminal's text (term.js draws its rows as divs) inside Horizon's serial console page.
_TERMINAL_TEXT = "const t = document.querySelector('.terminal'); return t ? t.innerText : '';"


def _serial_console_tab(stack, sid: str) -> None:
    """Horizon with CONSOLE_TYPE "SERIAL": the Console tab's iframe is Horizon's serial page, whose terminal shows
    the guest's shell through Stratus's serial proxy and runs what is typed into it."""
    from selenium.webdriver.common.action_chains import ActionChains
    with hz.serve(f"{stack.url}/identity/v3", "libvirt-serial", console_type="SERIAL") as horizon, \
            chromium() as browser:
        browser.set_window_size(1400, 1000)
        horizon.sign_in(browser, "admin", ADMIN_PASSWORD)
        horizon.open(browser, f"/project/instances/{sid}/?tab=instance_details__console", "serial console tab")
        frame = browser.find_element("css selector", "iframe#console_embed")
        assert frame.get_attribute("src").endswith(f"/project/instances/{sid}/serial"), frame.get_attribute("src")
        browser.switch_to.frame(frame)
        # On open the page sends a carriage return: the guest's shell answers with its prompt.
        hz.wait_for(lambda: "Status: Open" in browser.find_element("tag name", "body").text and
                    "#" in browser.execute_script(_TERMINAL_TEXT), "the serial console's shell prompt", browser)
        terminal = browser.find_element("css selector", ".terminal")
        terminal.click()  # term.js takes keys once focused
        ActionChains(browser).send_keys("echo STRATUS-$((6*7))\n").perform()
        hz.wait_for(lambda: "STRATUS-42" in browser.execute_script(_TERMINAL_TEXT).replace("$((6*7))", ""),
                    "the command's output in the serial console", browser, timeout=30)
        browser.switch_to.default_content()
        browser.save_screenshot(str(hz.ARTIFACTS / "libvirt-serial-console.png"))
    assert f"type=serial instance={sid} client=127.0.0.1 result=accepted" in stack.log("serialproxy")


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

        _serial_console_tab(stack, sid)  # the same guest, while it runs

        browser.get(f"{horizon.url}/project/instances/")
        hz.row_action(browser, horizon, sid, "delete", "delete requested")
        hz.wait_row(browser, horizon, sid, "", timeout=120)
        stack.wait_server(sid, "DELETED", timeout=120)
