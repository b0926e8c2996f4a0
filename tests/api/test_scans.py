"""Reading and cancelling scans: results (JSON, CSV, manifest), cancel, active, history, diff,
and who may see what. Responses are checked against the OpenAPI schema the views declare."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from engine import ENGINE_VERSION
from engine.config import ScanConfig
from progress import store
from scanner.csv_export import CSV_FIELDS
from scanner.models import Scan
from tests.api.support import (
    UNKNOWN_ID,
    assert_documented,
    client_for,
    error_of,
    finished_scan,
    pending_scan,
    ranked,
    streamed_text,
)
from tests.support.accounts import user_with_token
from tests.support.factories import DEMO_AS_OF

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]


# --- GET /scan/results/<id> ------------------------------------------------------------------


def test_results_of_a_finished_scan_have_the_scan_its_ranked_rows_skips_and_manifest(
    api: APIClient, owner: tuple[User, str], demo_rows: list[dict[str, Any]]
) -> None:
    scan = finished_scan(owner[0], demo_rows[::-1])
    response = api.get(f"/scan/results/{scan.id}")
    assert response.status_code == 200
    body = response.json()
    assert [r["symbol"] for r in body["results"]] == [r["symbol"] for r in demo_rows]
    assert body["results"] == ranked(demo_rows)
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
        "screen": {"filter": "", "rank_by": "", "order": "desc", "screen_id": None},
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
    text = streamed_text(response)
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_FIELDS)
    assert [line.split(",")[0] for line in lines[1:]] == [r["symbol"] for r in demo_rows]
    assert_documented(response, "get", "/scan/results/{scan_id}", text)


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
