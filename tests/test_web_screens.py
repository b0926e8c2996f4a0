"""The screen editor of the scan form end to end in a real headless chromium, against daphne, a
real Redis and real Celery workers on the 2000-symbol demo market: the starter screens, a filter
with an unknown field underlined and fixed by its suggestion, autocompletion from the keyboard,
the "what does this match now" count, saving, renaming, a scan run with the saved screen (its
columns in the results, every row matching the filter) and deleting it. Screenshots go to
test-output/screenshots for a person to look at."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, FloatRect, Page, expect

from scanner.models import Scan, ScanResult, Screen
from scanner.screens import STARTER_SCREENS
from tests.conftest import INTEGRATION_DEMO_SYMBOLS
from tests.support.browser import PASSWORD, logged_in, low_contrast, result_count, screenshot, unlabelled_controls
from tests.support.processes import RedisServer, WebServer, Workers, database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BATCH_SIZE = 5
SCAN_PAGE = re.compile(r"/scans/[0-9a-f-]{36}/$")
TEXT = "h1, h2, p, label, legend, th, td, a, button, .badge, .status, [role=option] span"
SAMPLE = 80
THRESHOLD = 60.0
TYPED = f"rsi_14 < {THRESHOLD:g} and clsoe > sma_50"
FIXED = f"rsi_14 < {THRESHOLD:g} and close > sma_50"
NAME = "Cooled off above the 50-day"
RENAMED = "Cooled off, above sma_50"
MATCHES = re.compile(rf"^(\d+) of {SAMPLE} symbols match as of \d{{4}}-\d{{2}}-\d{{2}}\.$")


@pytest.fixture(scope="module")
def site(
    workers: Workers,
    redis_server: RedisServer,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebServer]:
    """daphne on the workers' market (as in test_web_browser: the shared ``web_server`` keeps the
    default 500-symbol demo market and batch size, which the workers would not agree with)."""
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
    server = WebServer(env, tmp_path_factory.mktemp("web-screens") / "daphne.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def analyst() -> User:
    return User.objects.create_user(f"screener-{time.monotonic_ns()}", password=PASSWORD)


@pytest.fixture
def page(chromium: Browser, site: WebServer, analyst: User) -> Iterator[Page]:
    page = logged_in(chromium, site, analyst)
    yield page
    page.context.close()


def numbers(page: Page, key: str) -> list[float]:
    """The column ``key`` of the results table (e.g. ``screen:rsi_14``) as numbers."""
    texts = page.locator(f'#results-table tbody td[data-key="{key}"]').all_inner_texts()
    return [float(t.replace(",", "")) for t in texts]


def inside(inner: FloatRect | None, outer: FloatRect | None) -> bool:
    assert inner is not None and outer is not None
    return bool(
        outer["x"] <= inner["x"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
        and outer["y"] <= inner["y"]
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
    )


def test_an_analyst_writes_a_screen_with_help_saves_it_runs_it_and_deletes_it(page: Page, analyst: User) -> None:
    picker = page.get_by_label("Saved screen", exact=True)
    filter_box = page.get_by_label("Filter", exact=True)
    rank_by = page.get_by_role("combobox", name="Rank by")
    status = page.locator("#screen-status")

    # The starter screens; choosing one fills the editor.
    starters = [s["name"] for s in STARTER_SCREENS]
    expect(picker.locator("option")).to_have_count(len(starters) + 1)
    assert sorted(picker.locator("option").all_inner_texts()[1:]) == sorted(starters)
    leaders = next(s for s in STARTER_SCREENS if s["name"] == "Relative strength leaders")
    picker.select_option(label=leaders["name"])
    expect(filter_box).to_have_value(leaders["filter"])
    expect(rank_by).to_have_value(leaders["rank_by"])
    expect(page.locator("#screen-description")).to_contain_text("relative strength")
    expect(status).to_contain_text("Valid")
    expect(page.get_by_role("button", name="Delete…")).to_be_enabled()
    picker.select_option(label="New screen (not saved)")
    expect(page.get_by_role("button", name="Delete…")).to_be_disabled()

    # A filter with an unknown field, typed: checked as it is typed, underlined where it is wrong.
    filter_box.fill("")
    rank_by.fill("")
    filter_box.press_sequentially(TYPED, delay=15)
    error = page.locator("#e-filter")
    expect(error).to_contain_text("unknown field 'clsoe'")
    mark = page.locator(".expr:has(#f-filter) mark.bad")
    expect(mark).to_have_text("clsoe")
    assert inside(mark.bounding_box(), filter_box.bounding_box())
    expect(filter_box).to_have_attribute("aria-invalid", "true")
    suggestion = error.get_by_role("button", name="Replace clsoe with close")
    expect(suggestion).to_have_text("close")
    assert unlabelled_controls(page) == []
    assert low_contrast(page, TEXT) == []
    screenshot(page, "screens-editor-error")

    suggestion.click()
    expect(filter_box).to_have_value(FIXED)
    expect(mark).to_have_count(0)
    expect(error).to_be_hidden()
    expect(filter_box).not_to_have_attribute("aria-invalid", "true")
    expect(status).to_contain_text("Valid")
    expect(status).to_contain_text("rsi_14, close, sma_50")

    # The ranking, completed from the keyboard: the listbox under the field as a name is typed.
    listbox = page.get_by_role("listbox", name="Fields and functions for the ranking")
    rank_by.press_sequentially("rs", delay=30)
    expect(listbox).to_be_visible()
    expect(rank_by).to_have_attribute("aria-expanded", "true")
    options = listbox.get_by_role("option")
    offered = [options.nth(i).get_attribute("data-name") for i in range(options.count())]
    assert "rsi_14" in offered and "rs_rating" in offered
    rank_by.press("ArrowDown")
    expect(options.first).to_have_attribute("aria-selected", "true")
    expect(rank_by).to_have_attribute("aria-activedescendant", options.first.get_attribute("id") or "")
    assert low_contrast(page, TEXT) == []
    screenshot(page, "screens-autocomplete")
    rank_by.press("Escape")
    expect(listbox).to_be_hidden()
    expect(rank_by).to_have_attribute("aria-expanded", "false")
    rank_by.press_sequentially("i", delay=30)
    expect(options).to_have_count(1)
    rank_by.press("ArrowDown")
    rank_by.press("Enter")
    expect(rank_by).to_have_value("rsi_14")
    expect(listbox).to_be_hidden()
    page.get_by_label("Order").select_option(label="Lowest first")

    # What it matches now, over a sample of the market.
    page.get_by_label("Max symbols").fill(str(SAMPLE))
    page.get_by_role("button", name="What does this match now?").click()
    preview = page.locator("#preview-result")
    expect(preview).to_have_text(MATCHES, timeout=60_000)
    found = MATCHES.match(preview.inner_text())
    assert found is not None
    matched = int(found.group(1))
    assert matched > 0

    # Saved under a new name (a taken name is refused in the dialog), then renamed.
    page.get_by_role("button", name="Save as new…").click()
    dialog = page.get_by_role("dialog", name="Save as a new screen")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill(leaders["name"])
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#e-screen-name")).to_contain_text("already have a screen named")
    dialog.get_by_label("Name").fill(NAME)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(picker.locator("option:checked")).to_have_text(NAME)
    saved = Screen.objects.get(owner=analyst, name=NAME)
    assert (saved.filter, saved.rank_by, saved.order) == (FIXED, "rsi_14", "asc")
    assert saved.options == {"max_symbols": SAMPLE}
    expect(page.locator("#screen-dirty")).to_be_hidden()

    page.get_by_role("button", name="Rename…").click()
    dialog = page.get_by_role("dialog", name="Rename the screen")
    expect(dialog.get_by_label("Name")).to_have_value(NAME)
    dialog.get_by_label("Name").fill(RENAMED)
    dialog.get_by_role("button", name="Rename").click()
    expect(dialog).to_be_hidden()
    expect(picker.locator("option:checked")).to_have_text(RENAMED)
    saved.refresh_from_db()
    assert saved.name == RENAMED
    expect(picker.locator("option")).to_have_count(len(starters) + 2)

    # An edit is flagged until it is saved.
    save_changes = page.get_by_role("button", name="Save changes")
    expect(save_changes).to_be_disabled()
    for label, value in (("Highest first", "desc"), ("Lowest first", "asc")):
        page.get_by_label("Order").select_option(label=label)
        expect(page.locator("#screen-dirty")).to_be_visible()
        save_changes.click()
        expect(status).to_contain_text(f"Saved “{RENAMED}”")
        expect(page.locator("#screen-dirty")).to_be_hidden()
        saved.refresh_from_db()
        assert saved.order == value and saved.filter == FIXED

    # A scan of the saved screen: its columns in the results, every row matching its filter.
    with page.expect_request("**/scan/start") as started:
        page.get_by_role("button", name="Start scan").click()
    assert started.value.post_data_json == {"screen_id": saved.id}
    page.wait_for_url(SCAN_PAGE)
    expect(page.locator("#scan-filter")).to_have_text(FIXED)
    expect(page.locator("#status")).to_have_text("completed", timeout=90_000)
    expect(page.locator("#results-table tbody tr").first).to_be_visible()
    scan = Scan.objects.get(id=page.url.rstrip("/").rsplit("/", 1)[1])
    assert scan.screen_id == saved.id and scan.config["filter"] == FIXED
    assert result_count(page) == matched
    headers = page.locator("#results-table thead th button").all_inner_texts()
    assert headers[3:7] == ["Rank", "rsi_14", "close", "sma_50"]
    rsi = numbers(page, "screen:rsi_14")
    assert rsi and all(value <= THRESHOLD for value in rsi)  # shown to 2 decimals: exact below
    assert rsi == sorted(rsi) and numbers(page, "screen:rank") == list(range(1, len(rsi) + 1))
    close, sma = numbers(page, "screen:close"), numbers(page, "screen:sma_50")
    assert all(c >= s for c, s in zip(close, sma, strict=True))
    for row in ScanResult.objects.filter(scan=scan):
        values = row.row["screen"]["values"]
        assert values["rsi_14"] < THRESHOLD and values["close"] > values["sma_50"]
    assert unlabelled_controls(page) == []
    assert low_contrast(page, TEXT) == []
    page.get_by_role("button", name="sma_50", exact=True).click()  # sortable like the others
    assert numbers(page, "screen:sma_50") == sorted(sma, reverse=True)
    page.get_by_role("button", name="Rank", exact=True).click()
    expect(page.locator('#results-table thead th[aria-sort="ascending"]')).to_have_text("Rank")
    screenshot(page, "screens-results")

    # Deleted, after a confirmation.
    page.get_by_role("link", name="New scan").click()
    picker.select_option(label=RENAMED)
    expect(filter_box).to_have_value(FIXED)
    expect(page.get_by_label("Max symbols")).to_have_value(str(SAMPLE))
    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog", name="Delete the screen")
    expect(dialog).to_contain_text(RENAMED)
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_hidden()
    expect(picker.locator("option")).to_have_count(len(starters) + 1)
    expect(status).to_contain_text(f"Deleted “{RENAMED}”")
    assert not Screen.objects.filter(pk=saved.pk).exists()
    assert Scan.objects.filter(pk=scan.pk).exists()
