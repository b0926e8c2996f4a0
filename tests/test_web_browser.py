"""The web page end to end in a real headless chromium, against daphne, a real Redis and real
Celery workers on the 2000-symbol demo market: log in, start a scan from the form, watch the
four stages complete and the results fill, sort, filter, export, chart; reload mid-scan and
cancel; a narrow screen. Screenshots go to test-output/screenshots for a person to look at."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from progress.tracker import STAGES
from tests.conftest import INTEGRATION_DEMO_SYMBOLS
from tests.support.browser import (
    PASSWORD,
    logged_in,
    low_contrast,
    result_count,
    screenshot,
    unlabelled_controls,
)
from tests.support.processes import RedisServer, WebServer, Workers, database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Small batches: a scan of the whole demo market (400 tasks a stage) then lasts long enough to
# reload and cancel it, and a scan of a few symbols still spreads over several tasks.
BATCH_SIZE = 5
SCAN_PAGE = re.compile(r"/scans/[0-9a-f-]{36}/$")
TEXT = "h1, h2, p, label, legend, th, td, a, button, .badge, .status"


@pytest.fixture(scope="module")
def site(
    workers: Workers,
    redis_server: RedisServer,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebServer]:
    """daphne on the workers' market (the shared ``web_server`` keeps the default 500-symbol demo
    market and batch size, which the workers would not agree with)."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "false",
        "TECHNIC_DEMO_SYMBOLS": str(INTEGRATION_DEMO_SYMBOLS),
        "TECHNIC_BATCH_SIZE": str(BATCH_SIZE),
    }
    server = WebServer(env, tmp_path_factory.mktemp("web-page") / "daphne.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def analyst() -> User:
    return User.objects.create_user(f"analyst-{time.monotonic_ns()}", password=PASSWORD)


@pytest.fixture
def page(chromium: Browser, site: WebServer, analyst: User) -> Iterator[Page]:
    page = logged_in(chromium, site, analyst)
    yield page
    page.context.close()


def overall(page: Page) -> float:
    return float(page.locator("#overall-pct").inner_text().rstrip("%"))


def tab_to(page: Page, element_id: str, limit: int = 40) -> int:
    """Presses Tab from the top of the page until ``element_id`` has focus; answers how many times."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return presses
    raise AssertionError(f"#{element_id} not reached with {limit} presses of Tab")


def test_an_analyst_starts_a_scan_from_the_form_watches_it_complete_and_reads_the_results(page: Page) -> None:
    assert unlabelled_controls(page) == []
    assert low_contrast(page, TEXT) == []
    expect(page.locator(".source")).to_contain_text("synthetic")

    rating = page.get_by_label("Minimum TechRating")
    rating.fill("150")
    page.get_by_role("button", name="Start scan").click()
    expect(page.locator("#e-min_tech_rating")).to_contain_text("100")
    expect(rating).to_have_attribute("aria-invalid", "true")
    rating.fill("")
    page.get_by_label("Energy").check()
    page.get_by_label("Max symbols").fill("24")
    tab_to(page, "start")
    page.keyboard.press("Enter")
    page.wait_for_url(SCAN_PAGE)

    expect(page.locator("#status")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#overall-pct")).to_have_text("100.0%")
    for stage in STAGES:
        row = page.locator(f'tr[data-stage="{stage}"]')
        expect(row.locator(".stage-status")).to_have_text("completed")
        expect(row.locator(".stage-pct")).to_have_text("100.0%")
    expect(page.locator("#results-table tbody tr").first).to_be_visible()
    assert 0 < result_count(page) <= 24
    for figure in ("Scan time", "Symbols/s", "Cache hit rate", "Symbol scanning"):
        expect(page.locator("#metrics")).to_contain_text(figure)
    expect(page.locator("#results-title")).to_contain_text("synthetic")
    assert set(page.locator("#results-table tbody td:nth-child(3)").all_inner_texts()) == {"Energy"}
    first = page.locator("#results-table tbody tr").first  # no alpha model of this market: empty, flagged
    assert first.locator("td:nth-child(12)").inner_text() == "—" and "no_alpha_model" in first.inner_text()
    expect(page.locator("#results-table thead")).to_contain_text("Alpha 5d")
    assert unlabelled_controls(page) == []
    assert low_contrast(page, TEXT) == []
    screenshot(page, "results")

    page.get_by_role("button", name="Rating", exact=True).click()  # ranked best first; again: ascending
    ratings = [float(t) for t in page.locator("#results-table tbody td:nth-child(4)").all_inner_texts()]
    assert ratings == sorted(ratings)
    threshold = ratings[len(ratings) // 2]
    page.get_by_label("Minimum rating").fill(str(threshold))
    expect(page.locator("#shown")).to_contain_text(f"of {len(ratings)} results")
    assert all(float(t) >= threshold for t in page.locator("#results-table tbody td:nth-child(4)").all_inner_texts())
    page.get_by_label("Minimum rating").fill("")

    csv = page.request.get(page.locator("#csv-link").get_attribute("href") or "")
    assert csv.ok and csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text().strip().splitlines()) == len(ratings) + 1

    symbol = page.locator("#results-table tbody th button").first
    name = symbol.inner_text()
    symbol.click()
    chart = page.locator("#chart")
    expect(chart.locator("svg")).to_be_visible()
    expect(page.locator("#chart-title")).to_contain_text(name)
    for level in ("entry", "stop", "target"):
        expect(chart.locator(f'svg [data-plan="{level}"]')).to_have_count(1)
    expect(chart).to_contain_text("synthetic")
    chart.scroll_into_view_if_needed()
    screenshot(page, "chart")

    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="Your scans")).to_be_visible()
    expect(page.locator("table.history tbody tr")).to_have_count(1)
    expect(page.locator("table.history")).to_contain_text("synthetic")


def test_a_long_scan_survives_a_reload_and_cancelling_it_keeps_partial_results(page: Page) -> None:
    page.get_by_role("button", name="Start scan").click()  # the whole market
    page.wait_for_url(SCAN_PAGE)
    expect(page.locator("#cancel")).to_be_visible()
    page.wait_for_function("parseFloat(document.querySelector('#overall-pct').textContent) >= 8", timeout=60_000)
    before = overall(page)
    screenshot(page, "progress")

    page.reload()
    page.wait_for_function(
        f"parseFloat(document.querySelector('#overall-pct').textContent) >= {before}", timeout=30_000
    )
    expect(page.locator('tr[data-stage="universe_loading"] .stage-status')).to_have_text("completed")
    page.wait_for_function(
        "parseFloat(document.querySelector('tr[data-stage=symbol_scanning] .stage-pct').textContent) >= 2",
        timeout=60_000,
    )
    page.get_by_role("button", name="Cancel scan").click()
    assert overall(page) > before
    screenshot(page, "progress-cancelling")
    expect(page.locator("#status")).to_have_text("cancelled", timeout=30_000)
    expect(page.locator("#partial-note")).to_contain_text("Cancelled: partial results")
    expect(page.locator("#results-table tbody tr").first).to_be_visible()
    assert 0 < result_count(page) < INTEGRATION_DEMO_SYMBOLS
    expect(page.locator("#cancel")).to_be_hidden()
    screenshot(page, "cancelled")


def start_whole_market_scan(page: Page) -> str:
    """Starts a scan of the whole demo market from the form; answers its id once it is moving."""
    page.get_by_role("button", name="Start scan").click()
    page.wait_for_url(SCAN_PAGE)
    page.wait_for_function("parseFloat(document.querySelector('#overall-pct').textContent) >= 8", timeout=60_000)
    return page.url.rstrip("/").rsplit("/", 1)[1]


def test_a_dropped_connection_is_announced_and_progress_resumes_over_a_new_socket(page: Page) -> None:
    sockets: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:  # each of the page's sockets, relayed to the server
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/scan/ws/"), through)
    start_whole_market_scan(page)
    assert len(sockets) == 1
    sockets[0].close(code=1006, reason="network dropped")
    expect(page.locator("#connection")).to_contain_text("Connection lost")
    screenshot(page, "connection-lost")
    expect(page.locator("#connection")).to_be_hidden(timeout=15_000)
    assert len(sockets) == 2
    after = overall(page)
    page.wait_for_function(f"parseFloat(document.querySelector('#overall-pct').textContent) > {after}", timeout=30_000)
    page.get_by_role("button", name="Cancel scan").click()
    expect(page.locator("#status")).to_have_text("cancelled", timeout=30_000)


# A WebSocket that never opens, as behind a proxy that refuses the upgrade.
REFUSED_WEBSOCKET = """window.WebSocket = class {
  constructor() { setTimeout(() => this.onclose && this.onclose({ code: 1006 }), 10); }
  close() {}
};"""


def test_the_page_follows_progress_over_sse_when_websockets_cannot_connect(page: Page) -> None:
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/scan/sse/" in request.url else None)
    page.add_init_script(REFUSED_WEBSOCKET)
    page.reload()
    page.get_by_label("Utilities").check()
    page.get_by_label("Max symbols").fill("12")
    page.get_by_role("button", name="Start scan").click()
    page.wait_for_url(SCAN_PAGE)
    expect(page.locator("#status")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#overall-pct")).to_have_text("100.0%")
    expect(page.locator("#connection")).to_be_hidden()
    expect(page.locator("#results-table tbody tr").first).to_be_visible()
    assert streams and all(url.endswith(f"/scan/sse/{page.url.rstrip('/').rsplit('/', 1)[1]}") for url in streams)


def test_a_failed_scan_says_what_happened_and_what_to_do_next(page: Page) -> None:
    from scanner import lifecycle

    scan_id = start_whole_market_scan(page)
    # What the workflow's error callback does when the provider goes down mid-scan.
    assert lifecycle.fail(scan_id, "DATA_PROVIDER_UNAVAILABLE", "the market data service did not answer")
    expect(page.locator("#status")).to_have_text("failed", timeout=30_000)
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text("The scan failed.")
    expect(outcome).to_contain_text("DATA_PROVIDER_UNAVAILABLE: the market data service did not answer")
    expect(outcome).to_contain_text("What to do next:")
    expect(page.locator("#partial-note")).to_contain_text(
        f"Failed: partial results, {result_count(page)} of {INTEGRATION_DEMO_SYMBOLS} symbols"
    )
    expect(page.locator("#cancel")).to_be_hidden()
    assert low_contrast(page, TEXT) == []
    screenshot(page, "failed")


def test_the_form_and_the_results_fit_a_narrow_screen(chromium: Browser, site: WebServer, analyst: User) -> None:
    page = logged_in(chromium, site, analyst, width=375, height=740)
    no_horizontal_scroll = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(no_horizontal_scroll)
    start = page.get_by_role("button", name="Start scan")
    start.scroll_into_view_if_needed()
    expect(start).to_be_in_viewport()
    screenshot(page, "mobile-form")

    page.get_by_label("Utilities").check()
    page.get_by_label("Max symbols").fill("6")
    start.click()
    page.wait_for_url(SCAN_PAGE)
    expect(page.locator("#results-table tbody tr").first).to_be_visible(timeout=60_000)
    assert page.evaluate(no_horizontal_scroll)
    screenshot(page, "mobile-results")
    page.context.close()
