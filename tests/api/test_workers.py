"""The scan endpoints with real Celery workers."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from progress import store
from scanner.models import Scan
from tests.api.support import (
    assert_documented,
    streamed_text,
)
from tests.support.processes import Workers
from tests.support.waits import wait_finished, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_server")]


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
    csv_lines = streamed_text(api.get(f"/scan/results/{scan_id}?format=csv")).splitlines()
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
