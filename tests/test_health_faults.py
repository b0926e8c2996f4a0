"""Health checks under fault, against real daphne, Redis and workers: a crowd of anonymous
``/health/detailed`` requests exhausts nothing (scans still start), and readiness reports a
database that no longer takes writes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from technic_project import health
from tests.support.accounts import user_with_token
from tests.support.processes import RedisServer, WebServer, Workers, database_url
from tests.support.waits import wait_finished

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONCURRENT_REQUESTS = 30
# Generous for two shared cores: each request's checks are bounded by a few seconds.
ANSWER_SECONDS = 30.0
METRICS_TOKEN = "t" * 40


def call(
    url: str, method: str = "GET", body: Any = None, token: str = "", scheme: str = "Token"
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"{scheme} {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def read_only(url: str) -> str:
    """``url`` (of database_url) opened read-only: SQLite's ``mode=ro``, PostgreSQL's
    ``default_transaction_read_only``."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url.removeprefix('sqlite:///')}%3Fmode%3Dro"
    return f"{url}?options=-c%20default_transaction_read_only%3Don"


@pytest.fixture
def own_web(redis_server: RedisServer, tmp_path: Path) -> Iterator[WebServer]:
    """daphne of this test's own: if it locks up, no other test shares it."""
    server = WebServer(
        {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url(connection.settings_dict)}, tmp_path / "daphne.log"
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def read_only_web(redis_server: RedisServer, tmp_path: Path) -> Iterator[WebServer]:
    """daphne whose database connections can read but not write."""
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": read_only(database_url(connection.settings_dict)),
        "TECHNIC_METRICS_TOKEN": METRICS_TOKEN,
    }
    server = WebServer(env, tmp_path / "daphne.log")
    server.start()
    yield server
    server.stop()


def test_a_crowd_of_detailed_health_requests_all_answer_and_a_scan_still_starts(
    workers: Workers, own_web: WebServer
) -> None:
    url = f"{own_web.url}/health/detailed"
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
        answers = list(pool.map(lambda _: call(url), range(CONCURRENT_REQUESTS)))
    assert time.monotonic() - started < ANSWER_SECONDS
    assert [status for status, _ in answers] == [200] * CONCURRENT_REQUESTS, answers[:3]
    assert {body["components"]["workers"]["status"] for _, body in answers} == {"up"}

    _, token = user_with_token(f"ops-{uuid.uuid4().hex[:8]}")
    status, body = call(f"{own_web.url}/scan/start", "POST", {"max_symbols": 5}, token)
    assert status == 202, body
    assert call(f"{own_web.url}/health/detailed")[0] == 200
    assert wait_finished(body["scan_id"], 60).status == "completed"


def test_concurrent_requests_share_one_worker_ping(monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[float] = []

    def slow_ping() -> dict[str, Any]:
        pings.append(time.monotonic())
        time.sleep(0.3)
        return {"status": "up", "workers": ["w1@here"], "count": 1}

    monkeypatch.setattr(health, "_ping_workers", slow_ping)
    check = health._WorkersCheck()
    with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
        answers = list(pool.map(lambda _: check(), range(CONCURRENT_REQUESTS)))
    assert len(pings) == 1
    assert {answer["status"] for answer in answers} == {"up"}
    assert all(answer["checked_seconds_ago"] < health.WORKERS_FRESH_SECONDS for answer in answers)


def test_readiness_on_a_database_that_takes_no_writes_is_503_naming_the_database(read_only_web: WebServer) -> None:
    status, body = call(f"{read_only_web.url}/health/ready")
    assert status == 503, body
    assert body["status"] == "not_ready" and body["down"] == ["database"]
    assert body["components"]["database"] == {"status": "down"}

    status, body = call(f"{read_only_web.url}/health/detailed", token=METRICS_TOKEN, scheme="Bearer")
    assert status == 503 and body["status"] == "unhealthy" and "database" in body["down"]
    assert "read" in body["components"]["database"]["error"].lower()  # "readonly" (SQLite), "read-only" (PostgreSQL)
    assert body["components"]["redis"]["status"] == body["components"]["broker"]["status"] == "up"
