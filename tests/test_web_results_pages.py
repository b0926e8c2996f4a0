"""The web page reads results that the API answers a page at a time: every row is shown, in a
real headless chromium against the web process with a small ``TECHNIC_RESULTS_PAGE_SIZE``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, expect

from engine.config import ScanConfig
from market.sources import DataSource, provider_for
from progress.tracker import ProgressTracker
from scanner.runner import run_scan
from tests.api.support import finished_scan
from tests.support.browser import PASSWORD, logged_in, result_count
from tests.support.processes import RedisServer, WebServer, database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE_SIZE = 7
ROWS = 25


@pytest.fixture(scope="module")
def paged_site(
    redis_server: RedisServer, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "false",
        "TECHNIC_RESULTS_PAGE_SIZE": str(PAGE_SIZE),
    }
    server = WebServer(env, tmp_path_factory.mktemp("paged-web") / "web.log")
    server.start()
    yield server
    server.stop()


def test_the_scan_page_shows_every_row_of_results_answered_in_pages(chromium: Browser, paged_site: WebServer) -> None:
    analyst = User.objects.create_user(f"analyst-{time.monotonic_ns()}", password=PASSWORD)
    template = run_scan(ScanConfig(max_symbols=11), provider_for(DataSource("demo")), ProgressTracker("t")).rows[0]
    rows = [{**template, "symbol": f"S{i:03d}", "tech_rating": 90 - i * 0.5} for i in range(ROWS)]
    scan = finished_scan(analyst, rows)
    page = logged_in(chromium, paged_site, analyst)
    try:
        page.goto(f"/scans/{scan.id}/")
        expect(page.locator("#shown")).to_contain_text(f"of {ROWS} results")
        assert result_count(page) == ROWS
        shown = page.locator("#results-table tbody th").all_inner_texts()
        assert shown == [r["symbol"] for r in rows]
    finally:
        page.context.close()
