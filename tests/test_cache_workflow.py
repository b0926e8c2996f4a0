"""The price cache under real scans: real Celery worker processes against the tests' redis-server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from cache_admin.models import CacheAction
from cache_admin.services import WarmInProgress, cache_warm
from cache_admin.tasks import warm_cache
from engine.config import ScanConfig
from market import cache
from market.sources import DataSource
from progress import store as progress
from scanner.selectors import ranked_rows
from scanner.services import scan_create
from tests.api.support import client_for
from tests.support.accounts import user_with_token
from tests.support.processes import RedisServer, Workers, free_port
from tests.support.waits import wait_finished, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def empty_cache(redis_server: RedisServer) -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def bars_counters() -> dict[str, int]:
    return cache.counters()["bars"]


def test_hits_and_misses_are_counted_per_scan_and_globally_across_two_worker_processes(
    workers: Workers, empty_cache: None
) -> None:
    config = ScanConfig(max_symbols=300)
    before, log_start = bars_counters(), workers.log.stat().st_size
    first = wait_finished(scan_create(owner=None, config=config, batch_size=25).id)
    with workers.log.open(errors="replace") as fh:
        fh.seek(log_start)
        fetchers = set(
            re.findall(
                r"(ForkPoolWorker-\d+) celery\.app\.trace \[scan=[^\]]*\] Task scanner\.tasks\.fetch_batch\[", fh.read()
            )
        )
    assert len(fetchers) == 2, f"the 12 fetch batches ran in {fetchers}, not in both worker processes"
    second = wait_finished(scan_create(owner=None, config=config, batch_size=25).id)
    after = bars_counters()

    assert first.status == second.status == "completed"
    assert first.metrics["cache"] == {"hits": 0, "misses": 300, "hit_rate": 0.0, "available": True}
    assert second.metrics["cache"] == {"hits": 300, "misses": 0, "hit_rate": 100.0, "available": True}
    assert after["hits"] - before["hits"] == 300 and after["misses"] - before["misses"] == 300
    assert ranked_rows(second) == ranked_rows(first)


def test_a_finished_scans_results_are_read_through_the_cache(workers: Workers, empty_cache: None) -> None:
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=30)).id)
    before = cache.counters()["results"]
    rows = ranked_rows(scan)
    assert ranked_rows(scan) == rows and len(rows) > 0
    after = cache.counters()["results"]
    assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (1, 1)


@pytest.fixture
def workers_without_cache(workers: Workers) -> Iterator[Workers]:
    """The worker processes restarted with CACHE_REDIS_URL pointing where nothing listens."""
    port = free_port()
    workers.stop()
    down = Workers({**workers.env, "CACHE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, workers.log)
    down.start()
    try:
        yield down
    finally:
        down.stop()
        workers.start()


def test_scans_run_uncached_and_say_so_when_the_cache_is_down(workers_without_cache: Workers) -> None:
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=120), batch_size=50).id)
    assert scan.status == "completed", scan.error_message
    assert scan.metrics["results"] + scan.metrics["skipped"] == 120
    assert scan.metrics["results"] > 100
    assert scan.metrics["cache"] == {"hits": 0, "misses": 0, "hit_rate": None, "available": False}
    snapshot = progress.current_snapshot(scan)
    assert snapshot["cache"]["available"] is False
    assert "price cache unavailable" in snapshot["message"]


def test_the_warmer_caches_the_default_scan_so_its_hit_rate_is_complete(workers: Workers, empty_cache: None) -> None:
    operator = client_for(user_with_token("operator", is_staff=True))
    assert operator.post("/api/cache/warm").status_code == 202
    wait_until(lambda: CacheAction.objects.filter(kind="warm").exists(), 120, "the warm task on a worker")
    warm = CacheAction.objects.get(kind="warm")
    assert (warm.username, warm.via) == ("operator", "api")
    assert warm.keys == 2000  # the whole default universe of the 2,000-symbol demo market

    scan = wait_finished(scan_create(owner=None, config=ScanConfig()).id)
    assert scan.metrics["cache"]["hit_rate"] == 100.0

    again = cache_warm(User.objects.get(username="operator"), "api", DataSource("demo"))
    assert (again.refreshed, again.fresh) == (0, 2000)  # nothing near expiry: nothing refetched


def test_a_second_warmer_does_nothing_while_one_is_running(redis_server: RedisServer) -> None:
    with cache.lock(f"warm:{DataSource('demo').cache_namespace()}", 60):
        with pytest.raises(WarmInProgress):
            cache_warm(source=DataSource("demo"))
        assert warm_cache.run() == {"state": "skipped", "reason": "a warmer is already running for demo"}
    assert not CacheAction.objects.exists()
