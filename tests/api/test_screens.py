"""Saved screens (/api/screens/ and /api/screens/<id>), the editor's catalogue, check and
preview, and running a saved screen through POST /scan/start. The test settings read the demo
provider, so previews scan synthetic data in-process; starts are recorded, not enqueued."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from engine.config import ScanConfig
from engine.screens.catalogue import catalogue
from market.providers import DataProviderError
from market.sources import DataSource, provider_for
from progress.tracker import ProgressTracker
from scanner import preview
from scanner.admin import ScreenForm
from scanner.models import Scan, Screen
from scanner.runner import run_scan
from scanner.screens import STARTER_SCREENS
from tests.api.support import assert_documented, client_for, demo_symbols, error_of
from tests.support.accounts import user_with_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

LIST = "/api/screens/"
SCREEN = {
    "name": "Momentum",
    "description": "Above the 50-day, RSI not stretched.",
    "filter": "close > sma_50 and rsi_14 < 70",
    "rank_by": "change(close, 21)",
    "order": "desc",
    "options": {"sectors": ["Energy"], "min_price": 10},
}
STARTER_NAMES = sorted(s["name"] for s in STARTER_SCREENS)


def url(screen_id: Any) -> str:
    return f"/api/screens/{screen_id}"


def created(api: APIClient, **fields: Any) -> dict[str, Any]:
    response = api.post(LIST, {**SCREEN, **fields}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def sent(client: APIClient, method: str, path: str, body: Any) -> Any:
    """``body`` as JSON with every non-ASCII character escaped (the test client's own encoder
    cannot write an unpaired surrogate)."""
    return getattr(client, method)(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def other() -> APIClient:
    """A second user's client."""
    return client_for(user_with_token("other"))


@pytest.fixture
def no_throttles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many requests a minute are the point of the fuzz tests (test_api_platform tests throttling)."""
    for scope in list(SimpleRateThrottle.THROTTLE_RATES):
        monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, None)


# --- Listing and creating --------------------------------------------------------------------


def test_a_new_user_has_the_starter_screens_listed_by_name(api: APIClient) -> None:
    response = api.get(LIST)
    assert response.status_code == 200
    screens = response.json()
    assert [s["name"] for s in screens] == STARTER_NAMES
    assert all(ScanConfig(filter=s["filter"], rank_by=s["rank_by"], order=s["order"]) for s in screens)
    assert_documented(response, "get", LIST)


def test_creating_a_screen_answers_201_with_it_and_lists_it_among_the_starters(api: APIClient) -> None:
    response = api.post(LIST, SCREEN, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", *SCREEN, "created_at", "updated_at"}
    assert {k: body[k] for k in SCREEN} == {**SCREEN, "options": {"sectors": ["Energy"], "min_price": 10.0}}
    assert_documented(response, "post", LIST)
    names = [s["name"] for s in api.get(LIST).json()]
    assert names == sorted([*STARTER_NAMES, "Momentum"])
    assert api.get(url(body["id"])).json() == body


def test_a_screen_needs_only_a_name_and_then_holds_no_filter_and_the_default_order(api: APIClient) -> None:
    response = api.post(LIST, {"name": "Everything"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["description"], body["filter"], body["rank_by"], body["order"], body["options"]) == (
        "",
        "",
        "",
        "desc",
        {},
    )


def test_options_are_stored_as_the_scan_config_holds_them(api: APIClient) -> None:
    symbols = [s.lower() for s in demo_symbols(2)]
    options = {"symbols": [*symbols, symbols[0]], "as_of": "2024-06-28", "max_symbols": 2, "risk_pct": 0.02}
    body = created(api, options=options)
    assert body["options"] == {
        "symbols": [s.upper() for s in symbols],
        "as_of": "2024-06-28",
        "max_symbols": 2,
        "risk_pct": 0.02,
    }
    assert Screen.objects.get(pk=body["id"]).options == body["options"]


def test_the_name_is_stored_without_surrounding_spaces(api: APIClient) -> None:
    assert created(api, name="  Spaced out  ")["name"] == "Spaced out"


# --- Reading, replacing, editing, deleting ---------------------------------------------------


def test_reading_a_screen_answers_it(api: APIClient) -> None:
    screen = created(api)
    response = api.get(url(screen["id"]))
    assert response.status_code == 200
    assert response.json() == screen
    assert_documented(response, "get", "/api/screens/{screen_id}")


def test_put_replaces_the_screen_and_fields_left_out_take_their_defaults(api: APIClient) -> None:
    screen = created(api)
    response = api.put(url(screen["id"]), {"name": "Oversold", "filter": "rsi_14 < 30"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in SCREEN} == {
        "name": "Oversold",
        "description": "",
        "filter": "rsi_14 < 30",
        "rank_by": "",
        "order": "desc",
        "options": {},
    }
    assert (body["id"], body["created_at"]) == (screen["id"], screen["created_at"])
    assert body["updated_at"] > screen["updated_at"]
    assert api.get(url(screen["id"])).json() == body
    assert_documented(response, "put", "/api/screens/{screen_id}")


def test_put_needs_the_name(api: APIClient) -> None:
    screen = created(api)
    error = error_of(api.put(url(screen["id"]), {"filter": "rsi_14 < 30"}, format="json"), 400)
    assert (error["code"], error["details"]["field"]) == ("INVALID_NAME", "name")


def test_patch_changes_the_fields_given_and_keeps_the_others(api: APIClient) -> None:
    screen = created(api)
    response = api.patch(url(screen["id"]), {"rank_by": "rsi_14", "order": "asc"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in SCREEN} == {**{k: screen[k] for k in SCREEN}, "rank_by": "rsi_14", "order": "asc"}
    assert_documented(response, "patch", "/api/screens/{screen_id}")


def test_patched_options_replace_the_options_whole(api: APIClient) -> None:
    screen = created(api)
    body = api.patch(url(screen["id"]), {"options": {"max_symbols": 30}}, format="json").json()
    assert body["options"] == {"max_symbols": 30}
    assert body["filter"] == SCREEN["filter"]


def test_a_screen_read_can_be_written_back_as_it_is(api: APIClient) -> None:
    screen = created(api)
    response = api.put(url(screen["id"]), screen, format="json")
    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in SCREEN} == {k: screen[k] for k in SCREEN}


def test_deleting_a_screen_answers_204_and_it_is_gone(api: APIClient) -> None:
    screen = created(api)
    response = api.delete(url(screen["id"]))
    assert (response.status_code, response.content) == (204, b"")
    assert error_of(api.get(url(screen["id"])), 404)["code"] == "SCREEN_NOT_FOUND"
    assert "Momentum" not in [s["name"] for s in api.get(LIST).json()]


@pytest.mark.parametrize("screen_id", ["999999", "9" * 30])
def test_a_missing_screen_answers_404_screen_not_found(api: APIClient, screen_id: str) -> None:
    for response in (
        api.get(url(screen_id)),
        api.put(url(screen_id), SCREEN, format="json"),
        api.patch(url(screen_id), {"name": "x"}, format="json"),
        api.delete(url(screen_id)),
    ):
        error = error_of(response, 404)
        assert (error["code"], error["details"]) == ("SCREEN_NOT_FOUND", {"screen_id": screen_id})


def test_anonymous_callers_get_401(api: APIClient) -> None:
    screen = created(api)
    anonymous = APIClient()
    for response in (anonymous.get(LIST), anonymous.get(url(screen["id"])), anonymous.get(f"{LIST}catalogue")):
        assert error_of(response, 401)["code"] == "NOT_AUTHENTICATED"


# --- Owners ----------------------------------------------------------------------------------


def test_another_users_screen_answers_404_to_every_method_and_is_left_as_it_was(
    api: APIClient, other: APIClient
) -> None:
    screen = created(api)
    for response in (
        other.get(url(screen["id"])),
        other.put(url(screen["id"]), {**SCREEN, "name": "Mine now"}, format="json"),
        other.patch(url(screen["id"]), {"filter": "close > 1"}, format="json"),
        other.delete(url(screen["id"])),
    ):
        assert error_of(response, 404)["code"] == "SCREEN_NOT_FOUND"
    assert api.get(url(screen["id"])).json() == screen
    assert "Momentum" not in [s["name"] for s in other.get(LIST).json()]
    assert [s["name"] for s in other.get(LIST).json()] == STARTER_NAMES


def test_names_are_unique_per_owner_with_free_names_suggested(api: APIClient) -> None:
    first = created(api)
    error = error_of(api.post(LIST, {**SCREEN, "filter": "close > 1"}, format="json"), 409)
    assert error["code"] == "SCREEN_NAME_TAKEN"
    assert error["details"] == {"name": "Momentum", "screen_id": first["id"]}
    assert error["suggestions"][:3] == ["Momentum (2)", "Momentum (3)", "Momentum (4)"]
    created(api, name="Momentum (2)")
    error = error_of(api.post(LIST, SCREEN, format="json"), 409)
    assert error["suggestions"][:3] == ["Momentum (3)", "Momentum (4)", "Momentum (5)"]
    assert Screen.objects.filter(name="Momentum").count() == 1


def test_a_suggested_name_stays_within_the_length_limit(api: APIClient) -> None:
    name = "x" * 100
    created(api, name=name)
    error = error_of(api.post(LIST, {**SCREEN, "name": name}, format="json"), 409)
    assert all(len(s) <= 100 for s in error["suggestions"][:3])
    assert error["suggestions"][0] == "x" * 96 + " (2)"


def test_renaming_to_a_name_taken_answers_409_and_changes_nothing(api: APIClient) -> None:
    screen = created(api)
    starter = STARTER_NAMES[0]
    for response in (
        api.patch(url(screen["id"]), {"name": starter}, format="json"),
        api.put(url(screen["id"]), {**SCREEN, "name": starter}, format="json"),
    ):
        assert error_of(response, 409)["code"] == "SCREEN_NAME_TAKEN"
    assert api.get(url(screen["id"])).json() == screen


def test_a_screen_keeps_its_own_name_when_saved_again(api: APIClient) -> None:
    screen = created(api)
    response = api.patch(url(screen["id"]), {"name": "Momentum", "order": "asc"}, format="json")
    assert response.status_code == 200, response.content


def test_another_user_may_use_the_same_name(api: APIClient, other: APIClient) -> None:
    mine = created(api)
    theirs = created(other)
    assert mine["id"] != theirs["id"] and mine["name"] == theirs["name"]
    assert api.get(url(theirs["id"])).status_code == 404


# --- Validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"name": ""}, "INVALID_NAME", "name"),
        ({"name": "   "}, "INVALID_NAME", "name"),
        ({"name": "x" * 101}, "INVALID_NAME", "name"),
        ({"name": 7}, "INVALID_NAME", "name"),
        ({"name": None}, "INVALID_NAME", "name"),
        ({"name": "two\nlines"}, "INVALID_NAME", "name"),
        ({"description": ["a"]}, "INVALID_DESCRIPTION", "description"),
        ({"description": "x" * 2001}, "INVALID_DESCRIPTION", "description"),
        ({"description": "nul \x00 byte"}, "INVALID_DESCRIPTION", "description"),
        ({"description": "\ud800 alone"}, "INVALID_DESCRIPTION", "description"),
        ({"filter": 3}, "INVALID_FILTER", "filter"),
        ({"rank_by": True}, "INVALID_RANK_BY", "rank_by"),
        ({"order": "up"}, "INVALID_ORDER", "order"),
        ({"options": []}, "INVALID_OPTIONS", "options"),
        ({"options": None}, "INVALID_OPTIONS", "options"),
        ({"options": {"min_price": "5"}}, "INVALID_MIN_PRICE", "min_price"),
        ({"options": {"max_symbols": 0}}, "INVALID_MAX_SYMBOLS", "max_symbols"),
        ({"options": {"sectors": ["Energy", 3]}}, "INVALID_SECTOR", "sectors"),
        ({"options": {"sectors": ["En\x00ergy"]}}, "INVALID_SECTOR", "sectors"),
        ({"options": {"as_of": "28/06/2024"}}, "INVALID_AS_OF", "as_of"),
        ({"options": {"universe": "sp500"}}, "INVALID_UNIVERSE", "universe"),
    ],
)
def test_an_invalid_field_answers_400_with_its_code_and_saves_nothing(
    api: APIClient, change: dict[str, Any], code: str, field: str
) -> None:
    before = Screen.objects.count()
    error = error_of(sent(api, "post", LIST, {**SCREEN, **change}), 400)
    assert (error["code"], error["details"]["field"]) == (code, field)
    assert Screen.objects.count() == before


@pytest.mark.parametrize(
    ("field", "text", "code", "position", "expected"),
    [
        ("filter", "close > ", "INVALID_FILTER", 8, "a number"),
        ("filter", "close > smaa_50", "INVALID_FILTER", 8, "a field"),
        ("filter", "close >> 3", "INVALID_FILTER", 7, "("),
        ("rank_by", "rsi_14 < 30", "INVALID_RANK_BY", 0, None),
    ],
)
def test_a_bad_expression_answers_400_with_its_position_and_what_was_expected(
    api: APIClient, field: str, text: str, code: str, position: int, expected: str | None
) -> None:
    error = error_of(api.post(LIST, {**SCREEN, field: text}, format="json"), 400)
    assert error["code"] == code
    assert (error["details"]["field"], error["details"]["position"]) == (field, position)
    assert expected is None or expected in error["details"]["expected"]
    if "smaa" in text:
        assert "sma_50" in error["suggestions"]


def test_an_unknown_field_or_option_answers_unknown_field(api: APIClient) -> None:
    error = error_of(api.post(LIST, {**SCREEN, "fliter": "close > 1"}, format="json"), 400)
    assert (error["code"], error["suggestions"]) == ("UNKNOWN_FIELD", ["filter"])
    for option in ("async_mode", "screen_id", "filter", "min_prise"):
        error = error_of(api.post(LIST, {**SCREEN, "options": {option: 1}}, format="json"), 400)
        assert (error["code"], error["details"]["object"]) == ("UNKNOWN_FIELD", "options"), option
    assert "min_price" in error["suggestions"]


@pytest.mark.parametrize("raw", ["[]", '"name"', "3", "null"])
def test_a_body_that_is_not_an_object_answers_400_invalid_body(api: APIClient, raw: str) -> None:
    response = api.post(LIST, raw, content_type="application/json")
    assert error_of(response, 400)["code"] == "INVALID_BODY"


def test_a_put_of_a_bad_filter_changes_nothing(api: APIClient) -> None:
    screen = created(api)
    stored = Screen.objects.get(pk=screen["id"])
    for response in (
        api.put(url(screen["id"]), {**SCREEN, "name": "Renamed", "filter": "close >"}, format="json"),
        api.patch(url(screen["id"]), {"name": "Renamed", "rank_by": "nope"}, format="json"),
    ):
        assert error_of(response, 400)["code"] in ("INVALID_FILTER", "INVALID_RANK_BY")
    assert api.get(url(screen["id"])).json() == screen
    assert Screen.objects.get(pk=screen["id"]).updated_at == stored.updated_at


# --- Running a saved screen ------------------------------------------------------------------


def test_starting_a_saved_screen_records_its_text_and_id_and_editing_it_later_leaves_the_scan(
    api: APIClient, enqueued: list[str]
) -> None:
    screen = created(api, options={"max_symbols": 20, "min_price": 1})
    response = api.post("/scan/start", {"screen_id": screen["id"]}, format="json")
    assert response.status_code == 202, response.content
    scan = Scan.objects.get()
    assert scan.screen_id == screen["id"]
    ran = {k: scan.config[k] for k in ("filter", "rank_by", "order", "max_symbols", "min_price")}
    assert ran == {"filter": SCREEN["filter"], "rank_by": SCREEN["rank_by"], "order": "desc"} | {
        "max_symbols": 20,
        "min_price": 1.0,
    }
    assert enqueued == [str(scan.id)]

    Scan.objects.filter(pk=scan.pk).update(status="completed", finished_at=timezone.now())
    edited = {"filter": "rsi_14 < 30", "rank_by": "rsi_14", "order": "asc"}
    assert api.patch(url(screen["id"]), edited, format="json").status_code == 200
    scan.refresh_from_db()
    assert {k: scan.config[k] for k in edited} == {k: SCREEN[k] for k in edited}
    assert api.delete(url(screen["id"])).status_code == 204
    scan.refresh_from_db()
    assert scan.screen_id is None and scan.config["filter"] == SCREEN["filter"]


def test_fields_beside_a_screen_id_override_the_saved_ones(api: APIClient) -> None:
    screen = created(api, options={"max_symbols": 20})
    body = {"screen_id": screen["id"], "rank_by": "rsi_14", "max_symbols": 5}
    assert api.post("/scan/start", body, format="json").status_code == 202
    config = Scan.objects.get().config
    assert (config["filter"], config["rank_by"], config["max_symbols"]) == (SCREEN["filter"], "rsi_14", 5)


def test_another_users_screen_id_starts_nothing(api: APIClient, other: APIClient) -> None:
    screen = created(api)
    assert error_of(other.post("/scan/start", {"screen_id": screen["id"]}, format="json"), 404)["code"] == (
        "SCREEN_NOT_FOUND"
    )
    assert not Scan.objects.exists()


# --- Catalogue and check ---------------------------------------------------------------------


def test_the_catalogue_is_the_languages(api: APIClient) -> None:
    response = api.get(f"{LIST}catalogue")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(catalogue()))
    assert {"close", "rs_rating", "breakout_20d"} <= {f["name"] for f in response.json()["fields"]}
    assert_documented(response, "get", "/api/screens/catalogue")


def test_checking_valid_expressions_answers_their_clauses_and_names(api: APIClient) -> None:
    body = {"filter": "close > sma_50 and weekly(close) > weekly(sma_20)", "rank_by": "change(close, 21) * 2"}
    response = api.post(f"{LIST}check", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "valid": True,
        "filter": {
            "clauses": ["close > sma_50", "weekly(close) > weekly(sma_20)"],
            "names": ["close", "sma_50", "weekly(close)", "weekly(sma_20)"],
        },
        "rank_by": {"clauses": ["change(close, 21) * 2"], "names": ["change(close, 21)", "close"]},
        "order": "desc",
    }
    assert_documented(response, "post", "/api/screens/check")


@pytest.mark.parametrize("body", [{}, {"filter": "", "rank_by": "  "}, {"order": "asc"}])
def test_checking_nothing_answers_valid_with_no_expressions(api: APIClient, body: dict[str, Any]) -> None:
    answer = api.post(f"{LIST}check", body, format="json").json()
    assert (answer["valid"], answer["filter"], answer["rank_by"]) == (True, None, None)
    assert answer["order"] == body.get("order", "desc")


def test_checking_a_bad_expression_answers_400_with_its_position(api: APIClient) -> None:
    response = api.post(f"{LIST}check", {"filter": "close > sma_50 and"}, format="json")
    error = error_of(response, 400)
    assert error["code"] == "INVALID_FILTER"
    assert error["details"]["position"] == len("close > sma_50 and")
    assert "a number" in error["details"]["expected"]
    assert_documented(response, "post", "/api/screens/check")
    error = error_of(api.post(f"{LIST}check", {"rank_by": "rsi_14 > 3"}, format="json"), 400)
    assert error["code"] == "INVALID_RANK_BY"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filter": "close > 1", "max_symbols": 3}, "UNKNOWN_FIELD"),
        ({"filter": ["close > 1"]}, "INVALID_FILTER"),
        ({"order": "sideways"}, "INVALID_ORDER"),
        ([], "INVALID_BODY"),
    ],
)
def test_checking_anything_else_answers_400(api: APIClient, body: Any, code: str) -> None:
    assert error_of(api.post(f"{LIST}check", body, format="json"), 400)["code"] == code


# --- Preview ---------------------------------------------------------------------------------


def test_a_preview_answers_what_the_screen_matches_now_as_a_scan_of_it_would(api: APIClient) -> None:
    body = {"filter": "close > sma_50", "rank_by": "rsi_14", "order": "asc", "max_symbols": 60, "min_price": 1}
    response = api.post(f"{LIST}preview", body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    config = ScanConfig(filter="close > sma_50", rank_by="rsi_14", order="asc", max_symbols=60, min_price=1)
    report = run_scan(config, provider_for(DataSource.from_settings()), ProgressTracker("expected"))
    assert answer["as_of"] == report.as_of.isoformat()
    assert answer["universe"] == 60
    assert answer["matched"] == len(report.rows) > 0
    assert answer["skipped_by_reason"] == report.metrics["skipped_by_reason"]
    assert answer["skipped_by_reason"]["not_matched"] > 0
    assert answer["matched"] + sum(answer["skipped_by_reason"].values()) == 60
    top = answer["top"]
    assert [r["symbol"] for r in top] == [r["symbol"] for r in report.rows[:10]]
    assert [r["screen"]["rank"] for r in top] == list(range(1, len(top) + 1))
    assert all(set(r) == {"symbol", "name", "sector", "tech_rating", "screen"} for r in top)
    assert all(r["screen"]["values"]["close"] > r["screen"]["values"]["sma_50"] for r in top)
    rsi = [r["screen"]["values"]["rsi_14"] for r in top]
    assert rsi == sorted(rsi)
    assert not Scan.objects.exists()
    assert_documented(response, "post", "/api/screens/preview")


def test_a_preview_of_a_saved_screen_takes_its_fields_and_the_overrides(api: APIClient, other: APIClient) -> None:
    screen = created(api, filter="rsi_14 < 101", rank_by="", options={"max_symbols": 12, "min_price": 1})
    answer = api.post(f"{LIST}preview", {"screen_id": screen["id"], "async_mode": False}, format="json").json()
    assert answer["universe"] == 12
    assert "not_matched" not in answer["skipped_by_reason"]
    body = {"screen_id": screen["id"], "filter": "rsi_14 < 0"}
    answer = api.post(f"{LIST}preview", body, format="json").json()
    assert (answer["matched"], answer["top"]) == (0, [])
    assert answer["skipped_by_reason"]["not_matched"] > 0
    response = other.post(f"{LIST}preview", {"screen_id": screen["id"]}, format="json")
    assert error_of(response, 404)["code"] == "SCREEN_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filter": "close >"}, "INVALID_FILTER"),
        ({"sectors": ["Enrgy"]}, "INVALID_SECTOR"),
        ({"as_of": "1990-01-02"}, "INVALID_AS_OF"),
        ({"max_symbols": "5"}, "INVALID_MAX_SYMBOLS"),
        ({"screen_id": 0}, "INVALID_SCREEN_ID"),
        ({"nope": 1}, "UNKNOWN_FIELD"),
        (["close > 1"], "INVALID_BODY"),
    ],
)
def test_a_preview_of_bad_options_answers_400(api: APIClient, body: Any, code: str) -> None:
    response = api.post(f"{LIST}preview", body, format="json")
    assert error_of(response, 400)["code"] == code
    assert_documented(response, "post", "/api/screens/preview")


def test_a_preview_whose_data_cannot_be_read_answers_503_with_the_providers_code(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(source: DataSource) -> Any:
        raise DataProviderError("the bars file cannot be read")

    monkeypatch.setattr(preview, "provider_for", unreadable)
    error = error_of(api.post(f"{LIST}preview", {"max_symbols": 5}, format="json"), 503)
    assert error["code"].startswith("DATA_")
    assert error["message"] == "the bars file cannot be read"


def test_previews_are_throttled_by_their_own_rate(api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"screen_preview": "2/min"})
    for _ in range(2):
        assert api.post(f"{LIST}preview", {"max_symbols": 11}, format="json").status_code == 200
    response = api.post(f"{LIST}preview", {"max_symbols": 11}, format="json")
    assert error_of(response, 429)["code"] == "THROTTLED"
    assert response["Retry-After"]
    assert api.post(f"{LIST}check", {}, format="json").status_code == 200  # other screen paths are not


# --- Admin -----------------------------------------------------------------------------------


def admin_form(owner: User, **fields: Any) -> ScreenForm:
    data = {"owner": owner.pk, "name": "Admin's", "description": "", "filter": "", "rank_by": "", "order": "desc"}
    return ScreenForm(data={**data, "options": json.dumps(fields.pop("options", {})), **fields})


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"filter": "close > smaa_50"}, "filter", "sma_50"),
        ({"rank_by": "close > 3"}, "rank_by", "must be a number"),
        ({"options": {"min_price": -1}}, "options", "min_price"),
        ({"options": {"sectorz": ["Energy"]}}, "options", "sectorz"),
        ({"options": {"as_of": "yesterday"}}, "options", "yesterday"),
        ({"options": ["Energy"]}, "options", "JSON object"),
    ],
)
def test_the_admin_refuses_a_screen_a_scan_could_not_run(
    owner: tuple[User, str], fields: dict[str, Any], field: str, says: str
) -> None:
    form = admin_form(owner[0], **fields)
    assert not form.is_valid()
    assert says in " ".join(str(e) for e in form.errors[field]), form.errors


def test_the_admin_saves_a_screen_a_scan_can_run(owner: tuple[User, str]) -> None:
    form = admin_form(owner[0], filter="rsi_14 < 30", options={"sectors": ["Energy"], "as_of": "2024-06-28"})
    assert form.is_valid(), form.errors
    assert form.save().options == {"sectors": ["Energy"], "as_of": "2024-06-28"}


def test_the_admin_lists_screens_to_staff(owner: tuple[User, str]) -> None:
    staff = User.objects.create_superuser("root", password="pw")
    client = APIClient()
    client.force_login(staff)
    response = client.get("/admin/scanner/screen/?q=Pullback")
    assert response.status_code == 200
    assert b"Pullback in an uptrend" in response.content
    assert b"close &gt; sma_200" in response.content


# --- Fuzz ------------------------------------------------------------------------------------

# Any text, unpaired surrogates (a JSON "\ud800" escape decodes to one) and NUL included.
TEXT = st.text(st.characters(codec=None, categories=None) | st.characters(categories=["Cs"]) | st.just("\x00"))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
EXPRESSION_CHARS = "closeandrsi_0123456789<>=!()+-*/., \n"
FIELD_VALUES = st.one_of(JSON, TEXT, st.text(alphabet=EXPRESSION_CHARS, max_size=60))
VALID_BODIES = [
    {"name": "Fuzzed"},
    {"name": "Fuzzed", "filter": "close > sma_50", "rank_by": "rsi_14", "order": "asc"},
    {**SCREEN, "name": "Fuzzed"},
]
OPTIONS = st.dictionaries(
    st.sampled_from(["sectors", "min_price", "max_symbols", "as_of", "symbols", "async_mode", "x"]),
    JSON | st.lists(TEXT, max_size=2),
    max_size=3,
)
BODIES = st.one_of(
    JSON,
    # Any fields, valid or not.
    st.fixed_dictionaries(
        {},
        optional={name: FIELD_VALUES for name in ("name", "description", "filter", "rank_by", "order", "options")},
    ),
    # A valid body with one field replaced, so that many reach the database and the answer.
    st.builds(
        lambda body, name, value: {**body, name: value},
        st.sampled_from(VALID_BODIES),
        st.sampled_from(["name", "description", "filter", "rank_by", "order", "options", "fliter"]),
        st.one_of(FIELD_VALUES, OPTIONS),
    ),
)
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def answered_without_a_server_error(response: Any) -> None:
    assert response.status_code < 500, response.content
    assert response.status_code in (200, 201, 400, 409), response.content
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "suggestions", "details"}


@pytest.mark.usefixtures("no_throttles")
@FUZZ
@given(body=BODIES)
def test_no_screen_body_answers_a_server_error(api: APIClient, body: Any) -> None:
    answered_without_a_server_error(sent(api, "post", LIST, body))


@pytest.mark.usefixtures("no_throttles")
@FUZZ
@given(body=BODIES)
def test_no_check_body_answers_a_server_error(api: APIClient, body: Any) -> None:
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k in ("filter", "rank_by", "order")}
    answered_without_a_server_error(sent(api, "post", f"{LIST}check", body))


@pytest.mark.usefixtures("no_throttles")
@FUZZ
@given(text=TEXT | st.text(alphabet=EXPRESSION_CHARS, max_size=80))
def test_no_filter_text_answers_a_server_error_when_saved_or_checked(api: APIClient, text: str) -> None:
    screen = Screen.objects.filter(owner__username="owner").first()
    assert screen is not None
    for response in (
        sent(api, "post", f"{LIST}check", {"filter": text}),
        sent(api, "patch", url(screen.pk), {"filter": text}),
        sent(api, "post", LIST, {"name": f"fuzz {len(text)}", "filter": text, "rank_by": text}),
    ):
        answered_without_a_server_error(response)
