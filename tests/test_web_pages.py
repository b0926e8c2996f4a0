"""The web pages and the chart endpoint through Django's test client: login, the scan form's
choices, a scan's page, history and diff, the chart's JSON, and plain errors."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from engine.types import GICS_SECTORS
from market.providers import DataProviderError
from market.sources import DataSource, provider_for
from scanner.models import Scan, ScanResult, ScanStatus
from tests.support.accounts import user_with_token

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_server")]


@pytest.fixture
def analyst() -> User:
    return user_with_token("analyst")[0]


@pytest.fixture
def browser(analyst: User) -> Client:
    client = Client()
    client.force_login(analyst)
    return client


def finished(owner: User, ratings: dict[str, float], minutes_ago: int = 0, **fields: Any) -> Scan:
    """A completed demo scan of ``owner`` with one result row per symbol (rating as given)."""
    provider = provider_for(DataSource("demo"))
    scan = Scan.objects.create(
        owner=owner,
        config={"sectors": ["Energy"]},
        data_provider="demo",
        synthetic=True,
        status=ScanStatus.COMPLETED,
        as_of=provider.date_range()[1],
        finished_at=timezone.now(),
        **fields,
    )
    Scan.objects.filter(id=scan.id).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    for symbol, rating in ratings.items():
        row = {"symbol": symbol, "name": symbol, "sector": "Energy", "tech_rating": rating, "signal": "buy"}
        row.update(entry=10.0, stop=9.0, target=12.0)
        ScanResult.objects.create(scan=scan, symbol=symbol, sector="Energy", tech_rating=rating, signal="buy", row=row)
    scan.refresh_from_db()
    return scan


def test_pages_send_an_anonymous_visitor_to_the_login_form() -> None:
    for url in ("/", "/history/", f"/scans/{'0' * 8}-0000-0000-0000-{'0' * 12}/"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_the_login_form_logs_in_with_labelled_fields_and_logout_is_a_post(analyst: User) -> None:
    client = Client()
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">' in page and '<label for="id_password">' in page
    response = client.post("/accounts/login/", {"username": "analyst", "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_shown_with_what_to_do() -> None:
    page = Client().post("/accounts/login/", {"username": "nobody", "password": "x"}).content.decode()
    assert 'role="alert"' in page and "changepassword" in page


def test_the_scan_form_offers_the_universes_sectors_and_labels_demo_data_synthetic(browser: Client) -> None:
    page = browser.get("/").content.decode()
    offered = re.findall(r'name="sectors" value="([^"]+)"', page)
    assert offered == sorted(GICS_SECTORS)
    assert "synthetic data" in page
    for field in ("symbols", "max_symbols", "min_tech_rating", "as_of", "account_size", "risk_pct", "target_rr"):
        assert f'<label for="f-{field}">' in page and f'id="e-{field}"' in page


def test_the_form_page_says_plainly_when_the_market_data_cannot_be_read(
    browser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise DataProviderError("bars file missing: /data/prices.parquet")

    monkeypatch.setattr("web.views.form_choices", broken)
    response = browser.get("/")
    page = response.content.decode()
    assert response.status_code == 503 and response["Content-Type"].startswith("text/html")
    assert "bars file missing" in page and "What to do next" in page and 'id="scan-form"' not in page


def test_a_scans_page_carries_its_urls_and_only_its_owner_sees_it(browser: Client, analyst: User) -> None:
    scan = finished(analyst, {"AAA": 50.0})
    response = browser.get(f"/scans/{scan.id}/")
    assert response.status_code == 200
    match = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', response.content.decode())
    assert match is not None
    data = json.loads(match.group(1))
    assert data["websocket_url"] == f"/scan/ws/{scan.id}" and data["results_url"] == f"/scan/results/{scan.id}"
    assert data["synthetic"] is True and data["chart_url"] == f"/scan/chart/{scan.id}/"
    stranger = Client()
    stranger.force_login(user_with_token("stranger")[0])
    for url in (f"/scans/{scan.id}/", f"/history/{scan.id}/diff/"):
        refused = stranger.get(url)
        assert refused.status_code == 404 and refused["Content-Type"].startswith("text/html")
        assert (
            "No such scan among yours." in refused.content.decode() and 'href="/history/"' in refused.content.decode()
        )


def test_pages_answer_html_errors_while_the_api_and_unknown_addresses_keep_json_ones(browser: Client) -> None:
    api = browser.get(f"/scan/results/{uuid.uuid4()}")
    assert api.status_code == 404 and api.json()["error"]["code"] == "SCAN_NOT_FOUND"
    unknown = browser.get("/no-such-page/")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    login_without_csrf = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "x", "password": "y"})
    assert login_without_csrf.status_code == 403 and login_without_csrf["Content-Type"].startswith("text/html")


def test_history_lists_finished_scans_newest_first_and_diffs_against_the_previous_one(
    browser: Client, analyst: User
) -> None:
    older = finished(analyst, {"AAA": 40.0, "BBB": 60.0, "CCC": 70.0}, minutes_ago=10)
    newer = finished(analyst, {"BBB": 65.0, "CCC": 70.0, "DDD": 55.0}, minutes_ago=1)
    Scan.objects.create(owner=analyst, config={}, data_provider="demo")  # pending: not in history
    page = browser.get("/history/").content.decode()
    assert page.index(f"/scans/{newer.id}/") < page.index(f"/scans/{older.id}/")
    assert page.count('href="/scans/') == 2 and "synthetic" in page
    diff = browser.get(f"/history/{newer.id}/diff/").content.decode()
    assert re.search(r"Entered \(1\)</h2>\s*<p class=\"symbols\">DDD", diff)
    assert re.search(r"Left \(1\)</h2>\s*<p class=\"symbols\">AAA", diff)
    assert '<th scope="row">BBB</th><td>60.0</td>' in diff and "5.0" in diff
    first = browser.get(f"/history/{older.id}/diff/").content.decode()
    assert "nothing earlier to compare" in first


def test_the_chart_endpoint_answers_a_result_symbols_series_with_its_trade_plan(browser: Client, analyst: User) -> None:
    symbol = provider_for(DataSource("demo")).instruments()[0].symbol
    scan = finished(analyst, {symbol: 70.0})
    response = browser.get(f"/scan/chart/{scan.id}/{symbol.lower()}")
    assert response.status_code == 200
    chart = response.json()
    assert scan.as_of is not None
    assert chart["symbol"] == symbol and chart["dates"][-1] == scan.as_of.isoformat()
    assert len(chart["dates"]) == len(chart["close"]) == len(chart["macd_hist"]) == 250
    assert chart["plan"] == {"entry": 10.0, "stop": 9.0, "target": 12.0}


def test_the_chart_endpoint_answers_json_404_for_others_scans_and_symbols_without_a_result(
    browser: Client, analyst: User
) -> None:
    scan = finished(analyst, {"AAA": 70.0})
    missing = browser.get(f"/scan/chart/{scan.id}/ZZZZ")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SYMBOL_NOT_FOUND"
    stranger = Client()
    stranger.force_login(user_with_token("stranger")[0])
    other = stranger.get(f"/scan/chart/{scan.id}/AAA")
    assert other.status_code == 404 and other.json()["error"]["code"] == "SCAN_NOT_FOUND"
    anonymous = Client().get(f"/scan/chart/{scan.id}/AAA")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "NOT_AUTHENTICATED"
