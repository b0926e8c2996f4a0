"""Starting scans: POST /scan/start (validation, limits, CSRF, waiting) and the legacy GET /scan.
Without workers the enqueueing is observed by patching ``scanner.services.scan_start``."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from engine.config import ScanConfig
from scanner import services
from scanner.models import Scan
from tests.api.support import (
    assert_documented,
    demo_symbols,
    error_of,
    finished_scan,
    pending_scan,
)
from tests.support.accounts import user_with_token
from tests.support.factories import DEMO_AS_OF

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]


# --- POST /scan/start ------------------------------------------------------------------------


def test_starting_a_scan_answers_202_with_its_urls_and_enqueues_it_once(
    api: APIClient, owner: tuple[User, str], enqueued: list[str]
) -> None:
    response = api.post("/scan/start", {"sectors": ["Energy"], "max_symbols": 5}, format="json")
    assert response.status_code == 202
    body = response.json()
    scan = Scan.objects.get()
    assert body == {
        "scan_id": str(scan.id),
        "status": "pending",
        "progress_url": f"/scan/progress/{scan.id}",
        "websocket_url": f"/scan/ws/{scan.id}",
        "sse_url": f"/scan/sse/{scan.id}",
        "results_url": f"/scan/results/{scan.id}",
    }
    assert scan.owner == owner[0]
    assert (scan.config["sectors"], scan.config["max_symbols"]) == (["Energy"], 5)
    assert enqueued == [str(scan.id)]
    assert_documented(response, "post", "/scan/start")


def test_an_empty_body_starts_a_scan_with_the_default_options(api: APIClient) -> None:
    assert api.post("/scan/start").status_code == 202
    assert Scan.objects.get().config == ScanConfig().as_dict()


def test_every_option_is_passed_to_the_scan(api: APIClient) -> None:
    options = {
        "universe": "default",
        "symbols": demo_symbols(3),
        "sectors": [],
        "max_symbols": 2,
        "min_tech_rating": 12.5,
        "lookback_days": 300,
        "as_of": "2024-06-28",
        "account_size": 50_000,
        "risk_pct": 0.02,
        "target_rr": 3,
        "min_price": 1,
        "min_dollar_volume": 0,
        "filter": "close > sma_50 and weekly(close) > weekly(sma_20)",
        "rank_by": "change(close, 21)",
        "order": "asc",
        "async_mode": True,
    }
    assert api.post("/scan/start", options, format="json").status_code == 202
    expected = {k: v for k, v in options.items() if k != "async_mode"}
    assert Scan.objects.get().config == expected


def test_symbols_are_upper_cased_and_duplicate_symbols_and_sectors_dropped(api: APIClient) -> None:
    first, second = demo_symbols(2)
    body = {"symbols": [first.lower(), first, second], "sectors": ["Energy", "Utilities", "Energy"]}
    assert api.post("/scan/start", body, format="json").status_code == 202
    config = Scan.objects.get().config
    assert (config["symbols"], config["sectors"]) == ([first, second], ["Energy", "Utilities"])


BAD_BODIES = [
    ({"max_symbols": "5"}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"max_symbols": 5.5}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"max_symbols": 5.0}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"max_symbols": True}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"max_symbols": 0}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"max_symbols": 20_001}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"max_symbols": None}, "INVALID_MAX_SYMBOLS", "max_symbols"),
    ({"min_tech_rating": 100.5}, "INVALID_MIN_TECH_RATING", "min_tech_rating"),
    ({"min_tech_rating": -1}, "INVALID_MIN_TECH_RATING", "min_tech_rating"),
    ({"min_tech_rating": "50"}, "INVALID_MIN_TECH_RATING", "min_tech_rating"),
    ({"min_tech_rating": False}, "INVALID_MIN_TECH_RATING", "min_tech_rating"),
    ({"min_tech_rating": 10**400}, "INVALID_MIN_TECH_RATING", "min_tech_rating"),
    ({"lookback_days": 0}, "INVALID_LOOKBACK_DAYS", "lookback_days"),
    ({"risk_pct": 0.5}, "INVALID_RISK_PCT", "risk_pct"),
    ({"account_size": "100000"}, "INVALID_ACCOUNT_SIZE", "account_size"),
    ({"as_of": "2024-13-01"}, "INVALID_AS_OF", "as_of"),
    ({"as_of": 20240102}, "INVALID_AS_OF", "as_of"),
    ({"as_of": "1990-01-02"}, "INVALID_AS_OF", "as_of"),
    ({"async_mode": "false"}, "INVALID_ASYNC_MODE", "async_mode"),
    ({"async_mode": 0}, "INVALID_ASYNC_MODE", "async_mode"),
    ({"universe": "nasdaq"}, "INVALID_UNIVERSE", "universe"),
    ({"sectors": "Energy"}, "INVALID_SECTOR", "sectors"),
    ({"sectors": [5]}, "INVALID_SECTOR", "sectors"),
    ({"sectors": ["Enrgy"]}, "INVALID_SECTOR", "sectors"),
    ({"symbols": "AAPL"}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["AA\x00PL"]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["AAPL\n"]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": [" AAPL"]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["ÄAPL"]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["\uff21\uff21\uff30\uff2c"]}, "INVALID_SYMBOL", "symbols"),  # full-width AAPL
    ({"symbols": [""]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["-AAPL"]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["A" * 16]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": [7]}, "INVALID_SYMBOL", "symbols"),
    ({"symbols": ["NOSUCHSYMBOL"]}, "INVALID_SYMBOL", "symbols"),
]


@pytest.mark.parametrize(("body", "code", "field"), BAD_BODIES, ids=[repr(b[0])[:40] for b in BAD_BODIES])
def test_an_invalid_option_answers_400_with_its_code_names_the_field_and_starts_nothing(
    api: APIClient, enqueued: list[str], body: dict[str, Any], code: str, field: str
) -> None:
    response = api.post("/scan/start", body, format="json")
    error = error_of(response, 400)
    assert error["code"] == code
    assert error["details"]["field"] == field
    assert error["details"]["value"]
    assert Scan.objects.count() == 0 and enqueued == []
    assert_documented(response, "post", "/scan/start")


def test_the_received_value_is_shown_escaped_with_the_index_of_the_bad_list_item(api: APIClient) -> None:
    first = demo_symbols(1)[0]
    error = error_of(api.post("/scan/start", {"symbols": [first, "A\x00\u00c4"]}, format="json"), 400)
    assert error["details"] == {"field": "symbols", "index": 1, "value": "'A\\x00\\xc4'"}


def test_an_unknown_sector_suggests_the_nearest_sector_names(api: APIClient) -> None:
    error = error_of(api.post("/scan/start", {"sectors": ["Energy", "Utilites"]}, format="json"), 400)
    assert error["code"] == "INVALID_SECTOR"
    assert "Utilites" in error["message"]
    assert error["suggestions"][0] == "Utilities"


def test_an_as_of_outside_the_data_suggests_the_last_market_date(api: APIClient) -> None:
    error = error_of(api.post("/scan/start", {"as_of": "2030-01-02"}, format="json"), 400)
    assert (error["code"], error["suggestions"]) == ("INVALID_AS_OF", [DEMO_AS_OF.isoformat()])


def test_an_unknown_field_is_rejected_with_the_field_it_resembles(api: APIClient, enqueued: list[str]) -> None:
    error = error_of(api.post("/scan/start", {"min_rating": 50}, format="json"), 400)
    assert error["code"] == "UNKNOWN_FIELD"
    assert error["details"] == {"fields": ["'min_rating'"]}
    assert error["suggestions"][0] == "min_tech_rating"
    assert Scan.objects.count() == 0 and enqueued == []


@pytest.mark.parametrize("raw", ["[1, 2]", '"sectors"', "null", "5"])
def test_a_body_that_is_not_a_json_object_answers_400_invalid_body(api: APIClient, raw: str) -> None:
    error = error_of(api.post("/scan/start", raw, content_type="application/json"), 400)
    assert error["code"] == "INVALID_BODY"
    assert Scan.objects.count() == 0


@pytest.mark.parametrize(
    "raw", ['{"min_tech_rating": NaN}', '{"min_tech_rating": Infinity}', '{"max_symbols": -Infinity}', '{"a": ']
)
def test_nan_infinity_and_broken_json_answer_400_malformed_json(api: APIClient, enqueued: list[str], raw: str) -> None:
    response = api.post("/scan/start", raw, content_type="application/json")
    assert error_of(response, 400)["code"] == "MALFORMED_JSON"
    assert Scan.objects.count() == 0 and enqueued == []
    assert_documented(response, "post", "/scan/start")


def test_a_body_that_is_not_json_answers_415(api: APIClient) -> None:
    response = api.post("/scan/start", "max_symbols=5", content_type="application/x-www-form-urlencoded")
    assert error_of(response, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert Scan.objects.count() == 0


def test_a_user_with_the_most_active_scans_gets_429_with_retry_after_and_their_ids(
    api: APIClient, owner: tuple[User, str], enqueued: list[str], settings: Any
) -> None:
    settings.TECHNIC_MAX_ACTIVE_SCANS = 2
    active = {str(pending_scan(owner[0]).id), str(pending_scan(owner[0], status="running").id)}
    finished_scan(owner[0], [])
    pending_scan(user_with_token("other")[0])
    response = api.post("/scan/start", {}, format="json")
    error = error_of(response, 429)
    assert error["code"] == "TOO_MANY_ACTIVE_SCANS"
    assert response["Retry-After"] == "5"
    assert set(error["details"]["active_scan_ids"]) == active
    assert Scan.objects.count() == 4 and enqueued == []
    assert_documented(response, "post", "/scan/start")

    Scan.objects.filter(id__in=active).update(status="cancelled")
    assert api.post("/scan/start", {}, format="json").status_code == 202


def test_starting_scans_is_throttled_by_its_own_rate(
    api: APIClient, monkeypatch: pytest.MonkeyPatch, enqueued: list[str]
) -> None:
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"scan_start": "2/min"})
    assert [api.post("/scan/start", {}, format="json").status_code for _ in range(2)] == [202, 202]
    response = api.post("/scan/start", {}, format="json")
    error = error_of(response, 429)
    assert error["code"] == "THROTTLED"
    assert 0 < int(response["Retry-After"]) <= 60
    assert len(enqueued) == 2
    assert api.get("/scan/history").status_code == 200  # other endpoints keep the user rate
    assert error_of(api.get("/scan?max_symbols=5"), 429)["code"] == "THROTTLED"  # the legacy start shares it


def test_a_session_client_needs_the_csrf_token_to_start_or_cancel(owner: tuple[User, str], enqueued: list[str]) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.login(username="owner", password="pw")
    response = browser.post("/scan/start", {}, format="json")
    assert "CSRF" in error_of(response, 403)["message"]
    assert Scan.objects.count() == 0
    scan = pending_scan(owner[0])
    assert "CSRF" in error_of(browser.post(f"/scan/cancel/{scan.id}"), 403)["message"]
    assert_documented(response, "post", "/scan/start")

    secret = "abcdefghijklmnopqrstuvwxyzABCDEF"  # a 32-character CSRF secret, as the cookie holds
    browser.cookies["csrftoken"] = secret
    assert browser.post("/scan/start", {}, format="json", HTTP_X_CSRFTOKEN=secret).status_code == 202
    assert browser.post(f"/scan/cancel/{scan.id}", HTTP_X_CSRFTOKEN=secret).status_code == 202
    assert len(enqueued) == 1


def test_async_mode_false_waits_and_answers_the_results_when_the_scan_finishes(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def finish_at_once(scan: Scan) -> None:
        Scan.objects.filter(id=scan.id).update(status="completed", as_of=DEMO_AS_OF, finished_at=timezone.now())

    monkeypatch.setattr(services, "scan_start", finish_at_once)
    response = api.post("/scan/start", {"async_mode": False}, format="json")
    assert response.status_code == 200
    assert response.json()["scan"]["status"] == "completed"
    assert_documented(response, "post", "/scan/start")


def test_async_mode_false_answers_202_with_the_urls_when_the_scan_outlasts_the_wait(
    api: APIClient, settings: Any
) -> None:
    settings.TECHNIC_SYNC_SCAN_TIMEOUT = 1
    response = api.post("/scan/start", {"async_mode": False}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["message"] == "still running; follow progress_url"
    assert body["progress_url"] == f"/scan/progress/{body['scan_id']}"
    assert_documented(response, "post", "/scan/start")


# --- GET /scan (legacy) ----------------------------------------------------------------------


def test_the_legacy_scan_takes_max_symbols_and_comma_separated_sectors_and_runs_synchronously(
    api: APIClient, enqueued: list[str], settings: Any
) -> None:
    settings.TECHNIC_SYNC_SCAN_TIMEOUT = 1
    response = api.get("/scan", {"max_symbols": "7", "sectors": "Energy, Utilities"})
    assert response.status_code == 202
    assert response.json()["message"] == "still running; follow progress_url"
    scan = Scan.objects.get()
    assert (scan.config["max_symbols"], scan.config["sectors"]) == (7, ["Energy", "Utilities"])
    assert enqueued == [str(scan.id)]
    assert_documented(response, "get", "/scan")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("max_symbols=abc", "INVALID_MAX_SYMBOLS"),
        ("max_symbols=5.5", "INVALID_MAX_SYMBOLS"),
        ("max_symbols=0", "INVALID_MAX_SYMBOLS"),
        ("max_symbols=" + "9" * 5000, "INVALID_MAX_SYMBOLS"),
        ("sectors=Energy,Enrgy", "INVALID_SECTOR"),
        ("min_tech_rating=50", "UNKNOWN_FIELD"),
    ],
)
def test_the_legacy_scan_validates_like_start(api: APIClient, enqueued: list[str], query: str, code: str) -> None:
    response = api.get(f"/scan?{query}")
    assert error_of(response, 400)["code"] == code
    assert Scan.objects.count() == 0 and enqueued == []
    assert_documented(response, "get", "/scan")
