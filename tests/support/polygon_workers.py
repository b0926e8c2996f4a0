"""Worker processes and this process configured for the polygon provider against the fake
Polygon server (a pytest plugin: the fixtures ``fake``, ``polygon_workers``, ``polygon_here``).
Importable before Django is set up (``bench.marketdata`` takes ``polygon_env``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.test.utils import override_settings

from tests.support.fake_polygon import API_KEY, FakePolygon
from tests.support.processes import RedisServer, Workers

if TYPE_CHECKING:
    from market.sources import DataSource

THRESHOLD, CONCURRENCY, WORKER_PROCESSES = 8, 4, 2
CALENDAR_INTERVAL = 1
"""Seconds between calendar reads of a source: short, so a test's next day is read at once."""


def polygon_env(fake: FakePolygon, market_dir: Path) -> dict[str, str]:
    return {
        "TECHNIC_DATA_PROVIDER": "polygon",
        "TECHNIC_UNIVERSE_PATH": str(market_dir / "constituents.csv"),
        "TECHNIC_MARKETDATA_CALENDAR_INTERVAL": str(CALENDAR_INTERVAL),
        "POLYGON_API_KEY": API_KEY,
        "POLYGON_BASE_URL": fake.url,
        "POLYGON_CALENDAR_TICKER": "AAPL",  # the fake serves S&P 500 members only, no SPY
        "POLYGON_HISTORY_START": "2013-01-01",
        "POLYGON_CONNECT_TIMEOUT": "1",
        "POLYGON_READ_TIMEOUT": "2",
        "POLYGON_MAX_RETRIES": "2",
        "POLYGON_BACKOFF_BASE": "0.05",
        "POLYGON_BACKOFF_MAX": "0.2",
        "POLYGON_RATE_LIMIT": "0",
        "POLYGON_CONCURRENCY": str(CONCURRENCY),
        "POLYGON_BREAKER_THRESHOLD": str(THRESHOLD),
        "POLYGON_BREAKER_COOLDOWN": "30",
    }


@pytest.fixture(scope="module")
def fake(market_dir: Path) -> Iterator[FakePolygon]:
    server = FakePolygon(market_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def polygon_workers(workers: Workers, fake: FakePolygon, market_dir: Path) -> Iterator[Workers]:
    """The shared worker processes replaced by ones configured for the polygon provider (the
    shared ones would take these scans' tasks with the demo settings), restored afterwards."""
    workers.stop()
    pool = Workers({**workers.env, **polygon_env(fake, market_dir)}, workers.log, name="polygon")
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()
        workers.start()


@pytest.fixture
def polygon_here(fake: FakePolygon, market_dir: Path, redis_server: RedisServer) -> Iterator[DataSource]:
    """This process configured like the workers; the price cache, breaker and log emptied."""
    from market import cache
    from market.sources import DataSource, provider_for

    overrides = {
        "TECHNIC_DATA_PROVIDER": "polygon",
        "TECHNIC_UNIVERSE_PATH": str(market_dir / "constituents.csv"),
        "TECHNIC_MARKETDATA_CALENDAR_INTERVAL": CALENDAR_INTERVAL,
        "POLYGON_API_KEY": API_KEY,
        "POLYGON_BASE_URL": fake.url,
        "POLYGON_CALENDAR_TICKER": "AAPL",
        "POLYGON_HISTORY_START": date(2013, 1, 1),
        "POLYGON_MAX_RETRIES": 2,
        "POLYGON_RATE_LIMIT": 0.0,
        "POLYGON_BREAKER_THRESHOLD": THRESHOLD,
        "POLYGON_BREAKER_COOLDOWN": 30.0,
    }
    client = redis_server.client()
    with override_settings(**overrides):
        source = DataSource.from_settings()
        client.delete("technic:breaker:polygon", "technic:breaker:polygon:probe")
        cache.clear()
        fake.reset()
        provider_for(source).calendar()  # this process's one calendar request, before the log starts
        fake.reset()
        yield source
        fake.reset()
        client.delete("technic:breaker:polygon", "technic:breaker:polygon:probe")
