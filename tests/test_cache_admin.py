"""The cache's admin page and its API (``/api/cache/stats|clear|warm``): who may do what,
CSRF, the audit trail, and answers when the cache's Redis is down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.test import APIClient

from cache_admin import api as cache_api
from cache_admin.models import CacheAction
from engine.types import Bars
from market import cache
from scanner.models import Scan, ScanResult, ScanSkip
from tests.api.support import client_for
from tests.support.accounts import user_with_token
from tests.support.processes import RedisServer

pytestmark = pytest.mark.django_db

PAGE = "/admin/cache_admin/cacheaction/"
AS_OF = date(2018, 1, 31)


def some_bars(n: int = 5) -> Bars:
    dates = np.arange(np.datetime64("2018-01-01"), np.datetime64("2018-01-01") + n).astype("datetime64[D]")
    close = np.linspace(10, 11, n)
    return Bars(dates, close, close + 1, close - 1, close, np.full(n, 1e5))


@pytest.fixture
def cached(redis_server: RedisServer) -> Iterator[RedisServer]:
    """Three cached symbols and a Celery key that must survive a clear."""
    cache.clear()
    cache.put_bars("ns", AS_OF, 500, {s: some_bars() for s in ("AAA", "BBB", "CCC")})
    redis_server.client().set("celery-task-meta-keep", "{}")
    yield redis_server
    cache.clear()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Warm requests, recorded instead of reaching a worker (tests/test_cache_workflow.py runs one)."""
    calls: list[tuple[Any, ...]] = []

    class Queued:
        id = "task-1"

    def delay(*args: Any) -> Queued:
        calls.append(args)
        return Queued()

    monkeypatch.setattr(cache_api.warm_cache, "delay", delay)
    monkeypatch.setattr("cache_admin.admin.warm_cache.delay", delay)
    return calls


def logged_in(username: str, csrf_checks: bool = False, **flags: Any) -> Client:
    User.objects.create_user(username, password="pw", **flags)
    client = Client(enforce_csrf_checks=csrf_checks)
    assert client.login(username=username, password="pw")
    return client


def cached_keys(server: RedisServer) -> int:
    return len(list(server.client().scan_iter("technic:cache:bars:*")))


# --- The admin page ------------------------------------------------------------------------


def test_the_cache_page_shows_statistics_and_both_buttons_to_staff(cached: RedisServer) -> None:
    cache.missing("ns", AS_OF, 500, ["AAA", "BBB", "CCC", "DDD"])
    page = logged_in("operator", is_staff=True).get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Price cache" in html and 'data-status="' in html
    assert "Clear the cache" in html and "Warm the cache" in html
    assert "csrfmiddlewaretoken" in html
    assert cached.client().info("server")["redis_version"] in html


@pytest.mark.parametrize("who", ["anonymous", "analyst"])
def test_the_cache_page_and_its_actions_refuse_anyone_but_staff(cached: RedisServer, who: str) -> None:
    client = Client() if who == "anonymous" else logged_in("analyst")
    for response in (client.get(PAGE), client.post(PAGE + "clear/"), client.post(PAGE + "warm/")):
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert cached_keys(cached) == 3
    assert not CacheAction.objects.exists()


def test_clearing_without_the_csrf_token_is_refused(cached: RedisServer) -> None:
    response = logged_in("operator", csrf_checks=True, is_staff=True).post(PAGE + "clear/")
    assert response.status_code == 403
    assert cached_keys(cached) == 3
    assert not CacheAction.objects.exists()


def test_clearing_from_the_page_removes_the_cache_keys_only_and_is_audited(cached: RedisServer) -> None:
    client = logged_in("operator", csrf_checks=True, is_staff=True)
    token = client.get(PAGE).cookies["csrftoken"].value
    response = client.post(PAGE + "clear/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == PAGE
    assert cached_keys(cached) == 0
    assert cached.client().exists("celery-task-meta-keep")
    action = CacheAction.objects.get()
    assert (action.kind, action.username, action.via, action.keys) == ("clear", "operator", "admin", 4)
    page = client.get(PAGE).content.decode()
    assert "4 keys removed" in page and "operator" in page


def test_warming_from_the_page_queues_one_warm(cached: RedisServer, queued: list[tuple[Any, ...]]) -> None:
    client = logged_in("operator", is_staff=True)
    assert client.post(PAGE + "warm/").status_code == 302
    assert queued == [(User.objects.get(username="operator").pk, "admin")]
    assert client.get(PAGE + "warm/").status_code == 405


def test_the_cache_page_says_unavailable_when_the_cache_is_down(dead_cache: str) -> None:
    page = logged_in("operator", is_staff=True).get(PAGE)
    assert page.status_code == 200
    assert 'data-status="unavailable"' in page.content.decode()


def test_scan_administration_lists_status_counts_and_stage_timings(redis_server: RedisServer) -> None:
    scan = Scan.objects.create(config={}, data_provider="demo", status="failed", error_code="SCAN_STALLED")
    ScanResult.objects.create(scan=scan, symbol="AAA", tech_rating=50.0, row={"symbol": "AAA"})
    ScanSkip.objects.create(scan=scan, symbol="BBB", reason="no_data", detail="")
    ScanSkip.objects.create(scan=scan, symbol="CCC", reason="error", detail="")
    client = logged_in("root", is_staff=True, is_superuser=True)
    html = client.get("/admin/scanner/scan/").content.decode()
    assert "SCAN_STALLED" in html and "Stage seconds" in html
    assert '<td class="field-result_count">1</td>' in html and '<td class="field-skip_count">2</td>' in html
    assert client.get(f"/admin/scanner/scan/{scan.id}/change/").status_code == 200


# --- The API ---------------------------------------------------------------------------------


def test_statistics_need_a_signed_in_user(cached: RedisServer) -> None:
    assert APIClient().get("/api/cache/stats").json()["error"]["code"] == "NOT_AUTHENTICATED"
    body = client_for(user_with_token("analyst")).get("/api/cache/stats").json()
    assert body["available"] is True and body["by_kind"]["bars"]["keys"] == 3
    assert body["status"] in {"excellent", "good", "poor", "idle"}


def test_statistics_keep_the_fields_the_original_dashboard_reads(cached: RedisServer) -> None:
    body = client_for(user_with_token("analyst")).get("/api/cache/stats").json()
    assert body["total_keys"] == body["keys"] == sum(body["keys_by_type"].values())
    assert body["keys_by_type"]["bars"] == 3 and set(body["keys_by_type"]) == set(body["by_kind"])
    assert "hit_rate" in body and 0 < body["memory_used_mb"] < 10_000
    used = cached.client().info("memory")["used_memory"] / 2**20
    assert abs(body["memory_used_mb"] - used) < 5


def test_only_staff_may_clear_or_warm_through_the_api(cached: RedisServer, queued: list[tuple[Any, ...]]) -> None:
    analyst = client_for(user_with_token("analyst"))
    for path in ("/api/cache/clear", "/api/cache/warm"):
        response = analyst.post(path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert cached_keys(cached) == 3 and queued == []


def test_staff_clear_through_the_api_and_it_is_audited(cached: RedisServer) -> None:
    response = client_for(user_with_token("operator", is_staff=True)).post("/api/cache/clear")
    assert response.status_code == 200
    body = response.json()
    assert body["removed_keys"] == 4 and body["cleared_by"] == "operator"
    assert cached_keys(cached) == 0 and cached.client().exists("celery-task-meta-keep")
    assert CacheAction.objects.get().via == "api"


def test_a_session_client_must_send_the_csrf_token_to_clear(cached: RedisServer) -> None:
    User.objects.create_user("operator", password="pw", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="operator", password="pw")
    response = client.post("/api/cache/clear")
    assert response.status_code == 403 and response.json()["error"]["code"] == "CSRF_FAILED"
    assert cached_keys(cached) == 3


def test_warming_through_the_api_queues_a_task_unless_one_is_running(
    cached: RedisServer, queued: list[tuple[Any, ...]]
) -> None:
    operator = client_for(user_with_token("operator", is_staff=True))
    response = operator.post("/api/cache/warm")
    assert response.status_code == 202 and response.json() == {"task_id": "task-1", "status": "queued"}
    with cache.lock("warm:demo-2000", 60), override_settings(TECHNIC_DEMO_SYMBOLS=2000):
        busy = operator.post("/api/cache/warm")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "CACHE_WARM_IN_PROGRESS"
    assert len(queued) == 1


def test_when_the_cache_is_down_stats_say_so_and_clear_and_warm_answer_503(
    redis_server: RedisServer, dead_cache: str, queued: list[tuple[Any, ...]]
) -> None:
    operator = client_for(user_with_token("operator", is_staff=True))
    stats = operator.get("/api/cache/stats")
    assert stats.status_code == 200 and stats.json()["status"] == "unavailable"
    for path in ("/api/cache/clear", "/api/cache/warm"):
        response = operator.post(path)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "CACHE_UNAVAILABLE" and error["suggestions"]
    assert queued == [] and not CacheAction.objects.exists()
