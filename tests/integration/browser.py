"""Debian's Chromium, headless, driven through chromium-driver by Selenium, for the web
console's tests. Flags as ../shared's machine notes say: no background networking (this
machine has no internet, and Chromium's own calls out would be refused by the dozen), a
fresh profile per browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
T = TypeVar("T")
SWAPPED = "does not belong to the document"


def chromium(profile: Path, width: int = 1100, height: int = 900,
             phone: bool = False) -> webdriver.Chrome:
    """phone: a 390 px wide touch screen (headless windows are never narrower than 500)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):  # `make test`: every real peer
            raise RuntimeError("chromium is not installed (make test installs it)")
        pytest.skip("no chromium: infra/scripts/ensure-browser.sh installs it")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if phone:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 1, "touch": True}})
    options.accept_insecure_certs = True  # the service's self-signed certificate
    return webdriver.Chrome(options=options, service=Service(driver))


def wait_for(browser: webdriver.Chrome, test: Callable[[Any], T], timeout: float = 20,
             message: str = "") -> T:
    """Elements an htmx swap or a live update replaced meanwhile are looked up again
    (Chromium reports some as "Node with given id does not belong to the document")."""
    def again(driver: Any) -> T | bool:
        try:
            return test(driver)
        except WebDriverException as error:
            if isinstance(error, StaleElementReferenceException) or SWAPPED in str(error):
                return False
            raise

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(again, message)  # type: ignore[return-value]


def by_id(browser: webdriver.Chrome, element_id: str) -> WebElement:
    return browser.find_element("id", element_id)


def unlabelled_inputs(browser: webdriver.Chrome) -> list[str]:
    """Visible form controls with no label the screen reader could read."""
    found: list[str] = browser.execute_script("""
        return [...document.querySelectorAll('input, select, textarea')]
          .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
          .filter(e => !(e.id && document.querySelector('label[for="' + e.id + '"]'))
                       && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
          .map(e => e.name || e.outerHTML);""")
    return found


def overflows(browser: webdriver.Chrome) -> bool:
    """True when the page is wider than the window (a phone would scroll sideways)."""
    return bool(browser.execute_script(
        "return document.documentElement.scrollWidth > window.innerWidth + 1"))
