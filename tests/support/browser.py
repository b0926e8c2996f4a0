"""A real headless browser for the web page's end-to-end tests: Debian's chromium driven by
Playwright, screenshots under ``test-output/screenshots``, and in-page accessibility checks."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.support.processes import REPO, WebServer

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a-long-test-password"
"""The password of the accounts the browser tests log in with."""
SCREENSHOTS = REPO / "test-output" / "screenshots"

# Form controls (visible ones) with neither a <label>, aria-label nor aria-labelledby.
UNLABELLED_CONTROLS_JS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter((e) => e.offsetParent !== null)
  .filter((e) => e.tagName === 'BUTTON'
    ? !e.textContent.trim() && !e.getAttribute('aria-label')
    : !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
  .map((e) => e.outerHTML)"""

# WCAG contrast ratio of each visible element matching the selector against the first opaque
# background behind it; answers those below the minimum as [text, ratio].
LOW_CONTRAST_JS = """([selector, minimum]) => {
  const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (e) => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const e of document.querySelectorAll(selector)) {
    if (e.offsetParent === null || !e.textContent.trim()) continue;
    const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < minimum) failures.push([e.textContent.trim().slice(0, 40), ratio]);
  }
  return failures;
}"""


def launch() -> tuple[Playwright, Browser]:
    """Playwright and a headless chromium. Fails (never skips) when chromium is not installed:
    scripts/test installs it."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does)")
    playwright = sync_playwright().start()
    return playwright, playwright.chromium.launch(executable_path=CHROMIUM, headless=True)


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-output/screenshots, for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def unlabelled_controls(page: Page) -> list[str]:
    return list(page.evaluate(UNLABELLED_CONTROLS_JS))


def low_contrast(page: Page, selector: str, minimum: float = 4.5) -> list[Any]:
    return list(page.evaluate(LOW_CONTRAST_JS, [selector, minimum]))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless chromium. Playwright's sync API keeps an event loop running in this thread, which
    Django takes for async code; the test's own ORM calls are plain synchronous ones."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        playwright, browser = launch()
        yield browser
        browser.close()
        playwright.stop()


def logged_in(chromium: Browser, site: WebServer, analyst: User, width: int = 1280, height: int = 900) -> Page:
    """A new browser page, logged in through the login form, on the scan form."""
    context = chromium.new_context(base_url=site.url, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    assert unlabelled_controls(page) == []
    page.get_by_label("User name").fill(analyst.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="New scan")).to_be_visible()
    return page


def result_count(page: Page) -> int:
    return page.locator("#results-table tbody tr").count()
