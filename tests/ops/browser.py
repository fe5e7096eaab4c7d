"""A headless Chromium (Debian's chromium + chromedriver, driven by Selenium) and the real app
served by uvicorn on a free port, for the /ops browser tests.

Chromium is installed by `scripts/ensure-browser` (called by `.ci/run`). Outside CI a machine
without it skips the browser tests with that hint; in CI (CI=true) a missing browser fails them.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from sensor_billing.app import create_app
from sensor_billing.settings import Settings
from tests.support.net import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without these Chromium waits on the network (updates, sync, QUIC probes) this machine lacks.
CHROMIUM_ARGUMENTS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ops"


def require_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    message = f"{CHROMIUM} or {CHROMEDRIVER} is missing: run scripts/ensure-browser"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="sb-chromium-") as profile:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for argument in (*CHROMIUM_ARGUMENTS, f"--user-data-dir={profile}"):
            options.add_argument(argument)
        # The driver's path is given, so Selenium Manager never looks for (or downloads) one.
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The app on a free loopback port in a thread of its own; its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="asyncio",  # leaves the tests' event loop policy alone
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ops-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_heading(driver: webdriver.Chrome, prefix: str, seconds: float = 15) -> None:
    """Wait until the page shown has a heading starting with `prefix`: a click that submits a
    form returns before the next page has replaced the old one."""

    def arrived(driver: webdriver.Chrome) -> bool:
        return str(driver.find_element(By.TAG_NAME, "h1").text).startswith(prefix)

    WebDriverWait(
        driver, seconds, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(arrived)


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    return path
