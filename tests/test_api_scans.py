"""The scan endpoints (start, results, cancel, active, history, diff, legacy GET /scan) through
DRF's test client against a real redis-server. Without workers the enqueueing is observed by
patching ``scanner.services.scan_start``; the integration tests at the end run real workers.
Responses are also checked against the OpenAPI schema the views declare."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from datetime import date, timedelta
from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import User
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from progress import store
from progress.tracker import ProgressTracker
from scanner import services
from scanner.engine import ENGINE_VERSION
from scanner.engine.config import ScanConfig
from scanner.engine.scan import ROW_FIELDS
from scanner.models import Scan, ScanResult, ScanSkip
from scanner.runner import run_scan
from scanner.sources import DataSource, provider_for
from tests.accounts import user_with_token
from tests.processes import Workers
from tests.waits import wait_finished, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
DEMO_AS_OF = date(2024, 12, 31)


# --- Fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_throttle_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no request counted against its throttles."""
    monkeypatch.setattr(SimpleRateThrottle, "cache", LocMemCache(f"throttle-{uuid.uuid4()}", {}))


@pytest.fixture(autouse=True)
def enqueued(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the scans whose workflow was enqueued. Without the ``workers`` fixture nothing
    reaches the broker; with it, workflows really run."""
    started: list[str] = []
    if "workers" not in request.fixturenames:
        monkeypatch.setattr(services, "scan_start", lambda scan: started.append(str(scan.id)))
    return started


def client_for(user_and_token: tuple[User, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user_and_token[1]}")
    return client


@pytest.fixture
def owner() -> tuple[User, str]:
    return user_with_token("owner")


@pytest.fixture
def api(owner: tuple[User, str]) -> APIClient:
    return client_for(owner)


@pytest.fixture(scope="module")
def demo_rows() -> list[dict[str, Any]]:
    """Real result rows of a few demo symbols, computed in-process."""
    report = run_scan(ScanConfig(max_symbols=11), provider_for(DataSource("demo")), ProgressTracker("rows"))
    assert len(report.rows) >= 5
    return report.rows


def finished_scan(owner: User | None, rows: list[dict[str, Any]], status: str = "completed", **fields: Any) -> Scan:
    scan = Scan.objects.create(
        owner=owner,
        config=ScanConfig().as_dict(),
        data_provider="demo",
        synthetic=True,
        status=status,
        as_of=DEMO_AS_OF,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        metrics={"engine_version": ENGINE_VERSION, "results": len(rows), "skipped": 1},
        **fields,
    )
    ScanResult.objects.bulk_create(
        ScanResult(scan=scan, symbol=r["symbol"], sector=r["sector"], tech_rating=r["tech_rating"], signal="", row=r)
        for r in rows
    )
    ScanSkip.objects.create(scan=scan, symbol="ZZZZ", reason="no_data", detail="no bars")
    return scan


def pending_scan(owner: User | None, status: str = "pending") -> Scan:
    return Scan.objects.create(owner=owner, config=ScanConfig().as_dict(), data_provider="demo", status=status)


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "suggestions", "details"} and error["message"]
    return dict(error)


@functools.cache
def openapi() -> dict[str, Any]:
    """The schema drf-spectacular generates from the views, as OpenAPI 3.1 (JSON Schema 2020-12)."""
    with patched_settings({"OAS_VERSION": "3.1.0"}):
        return dict(SchemaGenerator().get_schema(request=None, public=True))


def assert_documented(response: Any, method: str, path: str) -> None:
    """The response's status and media type are declared for the operation, and its body
    matches the declared schema."""
    declared = openapi()["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, f"{response.status_code} undeclared for {method} {path}"
    media = response["Content-Type"].split(";")[0]
    schema = declared[str(response.status_code)]["content"][media]["schema"]
    body = response.content.decode() if media == "text/csv" else response.json()
    jsonschema.Draft202012Validator({**schema, "components": openapi()["components"]}).validate(body)


def demo_symbols(n: int) -> list[str]:
    return [i.symbol for i in provider_for(DataSource.from_settings()).instruments()[:n]]


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


# --- GET /scan/results/<id> ------------------------------------------------------------------


def test_results_of_a_finished_scan_have_the_scan_its_ranked_rows_skips_and_manifest(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    scan = finished_scan(owner[0], demo_rows[::-1])
    response = api.get(f"/scan/results/{scan.id}")
    assert response.status_code == 200
    body = response.json()
    assert [r["symbol"] for r in body["results"]] == [r["symbol"] for r in demo_rows]
    assert body["results"] == demo_rows
    assert body["skipped"] == [{"symbol": "ZZZZ", "reason": "no_data", "detail": "no bars"}]
    info = body["scan"]
    assert (info["id"], info["status"], info["config"], info["as_of"]) == (
        str(scan.id),
        "completed",
        ScanConfig().as_dict(),
        DEMO_AS_OF.isoformat(),
    )
    assert (info["data_provider"], info["synthetic"], info["error"]) == ("demo", True, None)
    assert set(info["stage_timings"]) == {"universe_loading", "data_fetching", "symbol_scanning", "finalization"}
    canonical = json.dumps(ScanConfig().as_dict(), sort_keys=True, separators=(",", ":"))
    assert info["manifest"] == {
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest(),
        "engine_version": ENGINE_VERSION,
        "data_provider": "demo",
        "data_source": {"provider": "demo", "data_path": None, "universe_path": None},
        "as_of": DEMO_AS_OF.isoformat(),
        "last_bar": {r["symbol"]: r["as_of"] for r in demo_rows},
    }
    assert_documented(response, "get", "/scan/results/{scan_id}")


def test_a_failed_scan_answers_its_partial_results_with_its_error(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    scan = finished_scan(owner[0], demo_rows[:2], status="failed", error_code="STALLED", error_message="no progress")
    response = api.get(f"/scan/results/{scan.id}")
    body = response.json()
    assert body["scan"]["status"] == "failed"
    assert body["scan"]["error"] == {"code": "STALLED", "message": "no progress"}
    assert len(body["results"]) == 2
    assert_documented(response, "get", "/scan/results/{scan_id}")


def test_results_export_as_a_csv_attachment(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    scan = finished_scan(owner[0], demo_rows)
    response = api.get(f"/scan/results/{scan.id}?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="scan-{scan.id}.csv"'
    lines = response.content.decode().splitlines()
    assert lines[0] == ",".join(ROW_FIELDS)
    assert [line.split(",")[0] for line in lines[1:]] == [r["symbol"] for r in demo_rows]
    assert_documented(response, "get", "/scan/results/{scan_id}")


def test_an_unknown_results_format_answers_400(api: APIClient, owner: tuple[User, str]) -> None:
    scan = finished_scan(owner[0], [])
    response = api.get(f"/scan/results/{scan.id}?format=xml")
    error = error_of(response, 400)
    assert (error["code"], error["details"]) == ("INVALID_FORMAT", {"field": "format", "value": "'xml'"})
    assert_documented(response, "get", "/scan/results/{scan_id}")


@pytest.mark.parametrize("status", ["pending", "running"])
def test_results_of_an_unfinished_scan_answer_409_with_the_progress_url(
    api: APIClient, owner: tuple[User, str], status: str
) -> None:
    scan = pending_scan(owner[0], status=status)
    for query in ("", "?format=csv"):
        response = api.get(f"/scan/results/{scan.id}{query}")
        error = error_of(response, 409)
        assert error["code"] == "SCAN_NOT_FINISHED"
        assert error["details"]["progress_url"] == f"/scan/progress/{scan.id}"
    assert_documented(response, "get", "/scan/results/{scan_id}")


# --- POST /scan/cancel/<id> ------------------------------------------------------------------


def test_cancelling_answers_202_and_cancelling_again_answers_the_same(api: APIClient, owner: tuple[User, str]) -> None:
    scan = pending_scan(owner[0], status="running")
    first, second = api.post(f"/scan/cancel/{scan.id}"), api.post(f"/scan/cancel/{scan.id}")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == second.json() == {"scan_id": str(scan.id), "status": "running", "cancel_requested": True}
    scan.refresh_from_db()
    assert scan.cancel_requested
    assert_documented(first, "post", "/scan/cancel/{scan_id}")


def test_cancelling_a_cancelled_scan_answers_202_with_its_status(api: APIClient, owner: tuple[User, str]) -> None:
    scan = finished_scan(owner[0], [], status="cancelled")
    response = api.post(f"/scan/cancel/{scan.id}")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_cancelling_a_finished_scan_answers_409(api: APIClient, owner: tuple[User, str], status: str) -> None:
    scan = finished_scan(owner[0], [], status=status)
    response = api.post(f"/scan/cancel/{scan.id}")
    assert error_of(response, 409)["code"] == "SCAN_FINISHED"
    scan.refresh_from_db()
    assert not scan.cancel_requested
    assert_documented(response, "post", "/scan/cancel/{scan_id}")


# --- GET /scan/active, /scan/history ---------------------------------------------------------


def test_active_lists_the_callers_pending_and_running_scans_newest_first_with_progress(
    api: APIClient, owner: tuple[User, str]
) -> None:
    older = pending_scan(owner[0], status="running")
    newer = pending_scan(owner[0])
    Scan.objects.filter(id=older.id).update(created_at=timezone.now() - timedelta(minutes=1))
    store.begin(older.id)
    store.stage_started(older.id, "universe_loading", 1)
    finished_scan(owner[0], [])
    pending_scan(user_with_token("other")[0])
    response = api.get("/scan/active")
    assert response.status_code == 200
    body = response.json()
    assert [item["scan_id"] for item in body] == [str(newer.id), str(older.id)]
    assert [item["status"] for item in body] == ["pending", "running"]
    assert body[1]["current_stage"] == "universe_loading"
    assert body[0]["overall_progress"] == 0
    assert body[0]["results_url"] == f"/scan/results/{newer.id}"
    assert_documented(response, "get", "/scan/active")


def test_history_pages_through_the_callers_finished_scans_newest_first(api: APIClient, owner: tuple[User, str]) -> None:
    now = timezone.now()
    scans = [finished_scan(owner[0], [], status=("completed", "failed", "cancelled")[i % 3]) for i in range(23)]
    for age, scan in enumerate(scans):
        Scan.objects.filter(id=scan.id).update(created_at=now - timedelta(minutes=age))
    pending_scan(owner[0])
    finished_scan(user_with_token("other")[0], [])
    newest_first = [str(s.id) for s in scans]

    first = api.get("/scan/history")
    body = first.json()
    assert (body["count"], len(body["results"]), body["previous"]) == (23, 20, None)
    assert [item["scan_id"] for item in body["results"]] == newest_first[:20]
    assert body["results"][0]["results_url"] == f"/scan/results/{scans[0].id}"
    assert_documented(first, "get", "/scan/history")
    last = api.get(body["next"]).json()
    assert [item["scan_id"] for item in last["results"]] == newest_first[20:]
    assert last["next"] is None
    page = api.get("/scan/history?limit=5&offset=10").json()
    assert [item["scan_id"] for item in page["results"]] == newest_first[10:15]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=abc", "INVALID_LIMIT"),
        ("limit=0", "INVALID_LIMIT"),
        ("limit=101", "INVALID_LIMIT"),
        ("offset=-1", "INVALID_OFFSET"),
        ("offset=x", "INVALID_OFFSET"),
    ],
)
def test_history_rejects_a_junk_limit_or_offset(api: APIClient, query: str, code: str) -> None:
    response = api.get(f"/scan/history?{query}")
    assert error_of(response, 400)["code"] == code
    assert_documented(response, "get", "/scan/history")


# --- GET /scan/diff/<id>/<other_id> ----------------------------------------------------------


def test_diff_lists_symbols_that_entered_or_left_and_rating_changes_largest_first(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    r0, r1, r2, r3, r4 = demo_rows[:5]
    changed = [{**r1, "tech_rating": r1["tech_rating"] + 5.0}, {**r2, "tech_rating": r2["tech_rating"] - 10.0}]
    before = finished_scan(owner[0], [r0, r1, r2, r3])
    after = finished_scan(owner[0], [*changed, r3, r4], status="cancelled")
    response = api.get(f"/scan/diff/{before.id}/{after.id}")
    assert response.status_code == 200
    assert response.json() == {
        "scan_id": str(before.id),
        "other_id": str(after.id),
        "entered": [r4["symbol"]],
        "left": [r0["symbol"]],
        "rating_changes": [
            {"symbol": r2["symbol"], "before": r2["tech_rating"], "after": r2["tech_rating"] - 10.0, "change": -10.0},
            {"symbol": r1["symbol"], "before": r1["tech_rating"], "after": r1["tech_rating"] + 5.0, "change": 5.0},
        ],
    }
    assert_documented(response, "get", "/scan/diff/{scan_id}/{other_id}")
    reverse = api.get(f"/scan/diff/{after.id}/{before.id}").json()
    assert (reverse["entered"], reverse["left"]) == ([r0["symbol"]], [r4["symbol"]])


def test_diff_with_an_unfinished_scan_answers_409(api: APIClient, owner: tuple[User, str]) -> None:
    done, running = finished_scan(owner[0], []), pending_scan(owner[0], status="running")
    response = api.get(f"/scan/diff/{done.id}/{running.id}")
    error = error_of(response, 409)
    assert (error["code"], error["details"]["scan_id"]) == ("SCAN_NOT_FINISHED", str(running.id))
    assert_documented(response, "get", "/scan/diff/{scan_id}/{other_id}")


# --- Who may see what ------------------------------------------------------------------------

ALL_PATHS = [
    ("post", "/scan/start"),
    ("get", "/scan?max_symbols=5"),
    ("get", f"/scan/results/{UNKNOWN_ID}"),
    ("post", f"/scan/cancel/{UNKNOWN_ID}"),
    ("get", "/scan/active"),
    ("get", "/scan/history"),
    ("get", f"/scan/diff/{UNKNOWN_ID}/{UNKNOWN_ID}"),
]


@pytest.mark.parametrize(("method", "path"), ALL_PATHS)
@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_every_path_answers_401_without_a_valid_token_or_session(method: str, path: str, token: str | None) -> None:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = getattr(client, method)(path)
    assert error_of(response, 401)["code"] == "NOT_AUTHENTICATED"
    assert Scan.objects.count() == 0


def paths_with(scan_id: Any, mine: Any) -> list[tuple[str, str, str]]:
    """(method, path, path in the schema) of every path naming ``scan_id``."""
    diff = "/scan/diff/{scan_id}/{other_id}"
    return [
        ("get", f"/scan/results/{scan_id}", "/scan/results/{scan_id}"),
        ("get", f"/scan/results/{scan_id}?format=csv", "/scan/results/{scan_id}"),
        ("post", f"/scan/cancel/{scan_id}", "/scan/cancel/{scan_id}"),
        ("get", f"/scan/diff/{scan_id}/{mine}", diff),
        ("get", f"/scan/diff/{mine}/{scan_id}", diff),
    ]


@pytest.mark.parametrize("whose", ["someone else's", "unknown"])
def test_a_scan_that_is_not_the_callers_answers_404_on_every_path_even_for_staff(whose: str) -> None:
    others = finished_scan(user_with_token("owner")[0], [])
    staff, token = user_with_token("staff", is_staff=True, is_superuser=True)
    mine = finished_scan(staff, [])
    scan_id = str(others.id) if whose == "someone else's" else UNKNOWN_ID
    client = client_for((staff, token))
    for method, path, documented in paths_with(scan_id, mine.id):
        response = getattr(client, method)(path)
        error = error_of(response, 404)
        assert (error["code"], error["details"]) == ("SCAN_NOT_FOUND", {"scan_id": scan_id}), path
        assert_documented(response, method, documented)
    others.refresh_from_db()
    assert not others.cancel_requested
    assert client.get("/scan/active").json() == [] and client.get("/scan/history").json()["count"] == 1


def test_a_malformed_scan_id_answers_404_in_json(api: APIClient) -> None:
    for path in ("/scan/results/not-a-uuid", "/scan/diff/1/2", "/scan/start/"):
        assert error_of(api.get(path), 404)["code"] == "NOT_FOUND"


# --- Integration: real workers ---------------------------------------------------------------


@pytest.mark.integration
def test_a_scan_started_through_the_api_runs_on_the_workers_and_its_results_can_be_fetched(
    workers: Workers, api: APIClient
) -> None:
    started = api.post("/scan/start", {"sectors": ["Energy", "Utilities"], "max_symbols": 40}, format="json")
    assert started.status_code == 202
    scan_id = started.json()["scan_id"]
    assert wait_finished(scan_id).status == "completed"
    response = api.get(f"/scan/results/{scan_id}")
    body = response.json()
    assert body["scan"]["status"] == "completed"
    assert len(body["results"]) + len(body["skipped"]) == 40
    assert {r["sector"] for r in body["results"]} <= {"Energy", "Utilities"}
    assert set(body["scan"]["manifest"]["last_bar"]) == {r["symbol"] for r in body["results"]}
    assert_documented(response, "get", "/scan/results/{scan_id}")
    csv_lines = api.get(f"/scan/results/{scan_id}?format=csv").content.decode().splitlines()
    assert len(csv_lines) == len(body["results"]) + 1


@pytest.mark.integration
def test_async_mode_false_answers_the_results_of_a_scan_run_by_the_workers(workers: Workers, api: APIClient) -> None:
    response = api.post("/scan/start", {"max_symbols": 30, "async_mode": False}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["scan"]["status"] == "completed"
    assert len(body["results"]) + len(body["skipped"]) == 30
    assert_documented(response, "post", "/scan/start")


@pytest.mark.integration
def test_cancelling_through_the_api_mid_scan_keeps_the_partial_results(
    workers: Workers, api: APIClient, settings: Any
) -> None:
    settings.TECHNIC_BATCH_SIZE = 50
    scan_id = api.post("/scan/start", {}, format="json").json()["scan_id"]
    total = Scan.objects.get(id=scan_id).total_symbols

    def scanning_under_way() -> bool:
        snap = store.snapshot(scan_id)
        return snap is not None and 0 < snap["stages"]["symbol_scanning"]["current"] < total // 2

    wait_until(scanning_under_way, 60, "scanning to be under way")
    cancelled = api.post(f"/scan/cancel/{scan_id}")
    assert (cancelled.status_code, cancelled.json()["cancel_requested"]) == (202, True)
    assert wait_finished(scan_id, timeout=30).status == "cancelled"
    body = api.get(f"/scan/results/{scan_id}").json()
    assert body["scan"]["status"] == "cancelled"
    assert body["results"], "partial results were not kept"
    assert any(s["reason"] == "cancelled" for s in body["skipped"])
    assert len(body["results"]) + len(body["skipped"]) == total


@pytest.mark.integration
def test_diff_of_two_real_scans_shows_the_symbols_a_higher_minimum_rating_left_out(
    workers: Workers, api: APIClient
) -> None:
    options = {"sectors": ["Information Technology"], "max_symbols": 60, "async_mode": False}
    low = api.post("/scan/start", {**options, "min_tech_rating": 0}, format="json").json()
    high = api.post("/scan/start", {**options, "min_tech_rating": 60}, format="json").json()
    assert (low["scan"]["status"], high["scan"]["status"]) == ("completed", "completed")
    below = sorted(r["symbol"] for r in low["results"] if r["tech_rating"] < 60)
    assert below, "every symbol rated 60 or more; the diff shows nothing"
    response = api.get(f"/scan/diff/{low['scan']['id']}/{high['scan']['id']}")
    assert response.json() == {
        "scan_id": low["scan"]["id"],
        "other_id": high["scan"]["id"],
        "entered": [],
        "left": below,
        "rating_changes": [],
    }
