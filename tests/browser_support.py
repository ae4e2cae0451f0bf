"""Headless Chromium (Debian's chromium + chromium-driver) through Selenium, and reading noVNC's page."""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator

CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium WebDriver with a throw-away profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="stratus-chromium-")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1024,768", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def novnc_status(browser) -> str:
    return browser.execute_script("const s = document.getElementById('status'); return s ? s.textContent : ''")


def wait_novnc_status(browser, pattern: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = novnc_status(browser)
        if re.search(pattern, status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"noVNC status is {status!r}, expected /{pattern}/")


# Pixels of the largest canvas that differ from its top-left (background) pixel.
CANVAS_INK = """
const cs = Array.from(document.querySelectorAll(arguments[0]));
let best = null;
for (const c of cs) { if (c.width > 0 && c.height > 0 && (!best || c.width * c.height > best.width * best.height)) best = c; }
if (!best) return -1;
const d = best.getContext('2d').getImageData(0, 0, best.width, best.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) n++;
}
return n;
"""


def wait_ink(browser, selector: str, timeout: float = 30, minimum: int = 200) -> int:
    deadline = time.monotonic() + timeout
    ink = -1
    while time.monotonic() < deadline:
        ink = browser.execute_script(CANVAS_INK, selector)
        if ink >= minimum:
            return ink
        time.sleep(0.5)
    raise AssertionError(f"the console canvas stayed blank ({ink} pixels differ from the background)")
