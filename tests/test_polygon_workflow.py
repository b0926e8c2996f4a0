"""Scans through the polygon provider on real Celery workers, against a local server answering
like Polygon (the real S&P 500 bars) and the tests' redis-server."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from engine.config import ScanConfig
from market.sources import DataSource
from scanner.services import scan_create
from tests.api.support import client_for
from tests.support.fake_polygon import FakePolygon, server_error
from tests.support.polygon_workers import CONCURRENCY, THRESHOLD, WORKER_PROCESSES
from tests.support.processes import Workers
from tests.support.waits import wait_finished

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

AS_OF = date(2018, 1, 31)


def test_a_polygon_scan_completes_and_counts_its_requests(
    polygon_workers: Workers, fake: FakePolygon, polygon_here: DataSource, owner: tuple[Any, str]
) -> None:
    failing = "XOM"
    fake.script(server_error(None, 500, match=f"/v2/aggs/ticker/{failing}/"))
    config = ScanConfig(sectors=("Energy", "Utilities"), as_of=AS_OF, min_tech_rating=0.0)
    scan = wait_finished(scan_create(owner=owner[0], config=config, source=polygon_here, batch_size=20).id, 90)

    assert scan.status == "completed", scan.error_message
    n = scan.total_symbols
    assert n > 50 and scan.metrics["results"] + scan.metrics["skipped"] == n
    assert scan.metrics["results"] > n / 2 and scan.metrics["skipped_by_reason"].get("no_data") == 1
    skip = scan.skips.get(symbol=failing)
    assert skip.reason == "no_data"
    assert "fetching its bars failed" in skip.detail and "HTTP 500: Internal server error" in skip.detail

    calls = scan.metrics["data_provider_calls"]
    sent = fake.calls()
    assert calls["requests"] == len(sent)  # counted in Redis by both worker processes
    # n symbols once each, the failing one 3 times in the data stage and 3 more in the scanning
    # stage, and each worker process's calendar once
    assert n + 2 * 3 - 1 <= len(sent) <= n + 2 * 3 - 1 + WORKER_PROCESSES
    assert calls["failed"] == 6 and calls["budget"] == 3 * n + 20
    assert calls["circuit_breaker"]["state"] == "closed"

    body = client_for(owner).get(f"/scan/results/{scan.id}").json()
    assert body["scan"]["metrics"]["data_provider_calls"]["requests"] == len(sent)
    assert {"symbol": failing, "reason": "no_data", "detail": skip.detail} in body["skipped"]


def test_a_scan_against_a_down_provider_fails_with_suggestions_and_the_breaker_shows_it(
    polygon_workers: Workers, fake: FakePolygon, polygon_here: DataSource, owner: tuple[Any, str]
) -> None:
    fake.script(server_error(None, 503, match=f"/{AS_OF.isoformat()}"))  # every bars window; not the calendar
    api = client_for(owner)
    started = api.post("/scan/start", {"as_of": "2018-01-31", "max_symbols": 120}, format="json")
    assert started.status_code == 202, started.content
    scan = wait_finished(started.json()["scan_id"], 60)

    assert scan.status == "failed" and scan.error_code == "DATA_PROVIDER_UNAVAILABLE"
    error = api.get(f"/scan/results/{scan.id}").json()["scan"]["error"]
    assert error["code"] == "DATA_PROVIDER_UNAVAILABLE"
    assert "circuit breaker open" in error["message"]
    assert any("GET /health/detailed" in s for s in error["suggestions"])
    # the breaker opened after THRESHOLD failures; only requests already in flight followed
    assert THRESHOLD <= len(fake.calls()) <= THRESHOLD + WORKER_PROCESSES * CONCURRENCY

    operator = Client()  # the breaker's details are for staff
    operator.force_login(User.objects.create_user("operator", password="pw", is_staff=True))
    provider = operator.get("/health/detailed").json()["components"]["data_provider"]
    assert provider["status"] == "down" and provider["circuit_breaker"]["state"] == "open"
    assert provider["circuit_breaker"]["consecutive_failures"] >= THRESHOLD

    sent = len(fake.calls())
    retried = api.post("/scan/start", {"as_of": "2018-01-31", "max_symbols": 120}, format="json")
    again = wait_finished(retried.json()["scan_id"], 60)
    assert again.error_code == "DATA_PROVIDER_UNAVAILABLE" and len(fake.calls()) == sent  # failed fast
