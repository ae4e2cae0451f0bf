"""Horizon (the OpenStack dashboard, unmodified, from PyPI) in front of a test stack, driven by headless Chromium:
install it (tools/dashboard install), serve it against a stack, sign in, open pages and check each one for HTTP
500s (Horizon's own log) and error toasts, take screenshots into artifacts/."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stack import REPO, free_port

ARTIFACTS = REPO / "artifacts" / "horizon"
PYPI = "https://pypi.org/simple/horizon/"


def install() -> float:
    """tools/dashboard install (a no-op when .venv-horizon is up to date; CI's install-deps test did it once):
    the seconds it took. Skipped, loudly, only when PyPI cannot be reached; any other failure fails."""
    t0 = time.monotonic()
    proc = subprocess.run([str(REPO / "tools" / "dashboard"), "install"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode:
        try:
            urllib.request.urlopen(PYPI, timeout=10)
        except OSError as exc:
            pytest.skip(f"!!! HORIZON NOT INSTALLED: PyPI unreachable ({exc}); tools/dashboard install said: "
                        f"{proc.stderr[-500:]} !!!")
        raise AssertionError(f"tools/dashboard install failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


@contextlib.contextmanager
def serve(keystone_url: str, name: str, console_type: str = "AUTO") -> Iterator["Horizon"]:
    """Horizon (tools/dashboard serve) on a free port against ``keystone_url``, its Console tab of
    ``console_type`` (Horizon's CONSOLE_TYPE); its log in artifacts/horizon/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = ARTIFACTS / f"{name}.log"
    env = {**os.environ, "STRATUS_DASHBOARD_BIND": f"127.0.0.1:{port}", "STRATUS_DASHBOARD_KEYSTONE_URL": keystone_url,
           "STRATUS_DASHBOARD_CONSOLE_TYPE": console_type}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(REPO / "tools" / "dashboard"), "serve"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"Horizon exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{url}/auth/login/", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, f"Horizon did not answer:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.3)
        yield Horizon(url, log_path, name)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # tools/dashboard serve execs Django's server: one process
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# Angular's pending XHRs (Horizon's panels fill themselves after the page loads); -1 where the page has no Angular.
_PENDING = """
try { return angular.element(document.body).injector().get('$http').pendingRequests.length; }
catch (e) { return -1; }
"""
# The visible error and warning toasts/alerts (Django messages and Angular toasts alike).
_ALERTS = """
return Array.from(document.querySelectorAll('.alert-danger, .alert-error, .alert-warning'))
  .filter(e => e.offsetParent !== null && e.textContent.trim()).map(e => e.textContent.replace(/\\s+/g, ' ').trim());
"""


class Horizon:
    def __init__(self, url: str, log_path: Path, name: str):
        self.url, self.log_path, self.name = url, log_path, name
        self._log_seen = 0
        self.shots = 0

    def new_log(self) -> str:
        """Horizon's log since the last call."""
        text = self.log_path.read_text(errors="replace")
        out, self._log_seen = text[self._log_seen:], len(text)
        return out

    def settle(self, browser, timeout: float = 30) -> None:
        """Wait for the page and Angular's XHRs to finish (and a moment for toasts to render)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if browser.execute_script("return document.readyState") == "complete" and \
                    browser.execute_script(_PENDING) <= 0:
                break
            time.sleep(0.2)
        time.sleep(0.5)

    def check(self, browser, what: str, allowed_alerts: tuple[str, ...] = ()) -> None:
        """Screenshot the page, then fail on an HTTP 500 in Horizon's log or an error/warning alert on it (other
        than ``allowed_alerts``, regular expressions)."""
        self.settle(browser)
        self.shots += 1
        slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
        browser.save_screenshot(str(ARTIFACTS / f"{self.name}-{self.shots:02d}-{slug}.png"))
        log = self.new_log()
        errors = [line for line in log.splitlines() if re.search(r'" 5\d\d \d+$|Internal Server Error', line)]
        assert not errors, f"{what}: HTTP 5xx in Horizon:\n" + "\n".join(errors) + f"\n{log[-4000:]}"
        alerts = [a for a in browser.execute_script(_ALERTS) if not any(re.search(p, a) for p in allowed_alerts)]
        assert not alerts, f"{what}: error alerts {alerts}\n{log[-4000:]}"
        assert "Something went wrong" not in browser.page_source, what

    def open(self, browser, path: str, what: str, **kw) -> None:
        browser.get(self.url + path)
        self.check(browser, what, **kw)

    def sign_in(self, browser, user: str, password: str) -> None:
        from selenium.webdriver.common.by import By
        browser.get(f"{self.url}/auth/login/")
        browser.delete_all_cookies()  # whoever was signed in is not any more
        browser.get(f"{self.url}/auth/login/")
        name = wait_for(lambda: browser.find_element(By.ID, "id_username"), "the sign-in form", browser)
        name.send_keys(user)
        browser.find_element(By.ID, "id_password").send_keys(password)
        browser.find_element(By.ID, "loginBtn").click()
        wait_for(lambda: "/auth/login" not in browser.current_url, f"{user} signed in", browser)


def wait_for(predicate, what: str, browser=None, timeout: float = 60, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # a stale element while the page redraws: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            if browser is not None:
                stem = ARTIFACTS / f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}"
                browser.save_screenshot(f"{stem}.png")
                stem.with_suffix(".html").write_text(browser.page_source)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


# --- the instance list and the Launch Instance wizard ---

def _click(browser, css: str, visible: bool = True) -> None:
    """Click the first (visible, unless ``visible`` is false: a row action in a closed menu) element ``css``."""
    from selenium.webdriver.common.by import By
    el = wait_for(lambda: next((e for e in browser.find_elements(By.CSS_SELECTOR, css)
                                   if e.is_displayed() or not visible), None), css, browser, timeout=30)
    browser.execute_script("arguments[0].click()", el)


def _wizard_step(browser, horizon, step: str, allowed_alerts: tuple[str, ...]) -> None:
    from selenium.webdriver.common.by import By
    link = browser.find_element(By.XPATH, f"//div[contains(@class,'modal')]//a[normalize-space()='{step}']")
    browser.execute_script("arguments[0].click()", link)
    horizon.check(browser, f"launch wizard {step}", allowed_alerts=allowed_alerts)


def _allocate(browser, item_id: str) -> None:
    """Move a row of the wizard's Available table (Source, Flavor, Networks) to Allocated."""
    _click(browser, f"tr:has(input[id='{item_id}']) button.fa-arrow-up")
    wait_for(lambda: browser.execute_script(
        "return !!document.querySelector(arguments[0])", f"tr:has(input[id='{item_id}']) button.fa-arrow-down"),
        f"{item_id} allocated", browser)


def _row_text(browser, server_id: str) -> str:
    """The text of the server's row in the instance list ("" without one)."""
    return browser.execute_script("const r = document.querySelector(`tr[data-object-id='${arguments[0]}']`);"
                                  "return r ? r.textContent.replace(/\\s+/g, ' ') : ''", server_id)


def wait_row(browser, horizon, server_id: str, text: str, timeout: float = 90) -> None:
    """Reload the instance list until the server's row says ``text`` (or, for "", until the row is gone)."""
    def ready() -> bool:
        browser.get(f"{horizon.url}/project/instances/")
        row = _row_text(browser, server_id)
        return (text in row) if text else not row
    wait_for(ready, f"instance row {text or 'gone'}", browser, timeout=timeout, every=1)


def row_action(browser, horizon, server_id: str, action: str, what: str, confirm: bool = True) -> None:
    """A row action of the instance list; Horizon asks to confirm the dangerous ones (shut off, delete)."""
    _click(browser, f"tr[data-object-id='{server_id}'] [id$='__action_{action}']", visible=False)
    if confirm:
        _click(browser, ".modal-footer a.btn:not(.cancel)")
    horizon.check(browser, what)


def launch(browser, horizon, name: str, image: str, flavor: str, network: str, key_pair: bool,
           allowed_alerts: tuple[str, ...]) -> None:
    """Project > Compute > Instances > Launch Instance: the wizard's Details, Source (``image``), Flavor, Networks
    (``network``: Horizon allocates the only one by itself) and, with ``key_pair``, the project's only key pair
    (allocated by Horizon too), then Launch."""
    from selenium.webdriver.common.by import By
    browser.get(f"{horizon.url}/project/instances/")
    horizon.settle(browser)
    _click(browser, "#instances__action_launch-ng")
    field = wait_for(lambda: next((e for e in browser.find_elements(By.ID, "name") if e.is_displayed()), None),
                     "launch wizard", browser)
    horizon.check(browser, "launch wizard details", allowed_alerts=allowed_alerts)
    field.send_keys(name)
    _wizard_step(browser, horizon, "Source", allowed_alerts)
    _allocate(browser, image)
    _wizard_step(browser, horizon, "Flavor", allowed_alerts)
    _allocate(browser, flavor)
    _wizard_step(browser, horizon, "Networks", allowed_alerts)
    if not browser.execute_script("return !!document.querySelector(arguments[0])",
                                  f"tr:has(input[id='{network}']) button.fa-arrow-down"):
        _allocate(browser, network)
    if key_pair:
        _wizard_step(browser, horizon, "Key Pair", allowed_alerts)
        assert browser.execute_script("return !!document.querySelector('tr:has(td) button.fa-arrow-down')")
    _click(browser, ".modal-footer button.finish")
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, ".modal-footer button.finish"), "wizard closed",
             browser)
    horizon.check(browser, "launched")
