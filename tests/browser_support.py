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
