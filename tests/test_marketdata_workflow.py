"""The market data store through real Celery workers: scans of the polygon provider against the
fake Polygon server (the real S&P 500 bars, its days shown one at a time) and the tests'
redis-server, counting every request the fake answered.

The suite's shared workers are stopped for this module (they would take its tasks with the demo
settings); each test runs workers of its own. Their price cache is database 1 of the tests'
redis-server, apart from the broker's database 0, so that it can be lost with FLUSHDB while
the broker keeps its queues and bindings, as with the cache instance of docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from django.test.utils import override_settings
from django.utils import timezone

from engine.config import ScanConfig
from engine.scan import INDICATOR_FIELDS
from engine.scan import scan_batch as engine_scan_batch
from engine.types import Bars, Instrument
from market.models import MarketSource, StoredBar, StoredDay
from market.sources import DataSource
from market.store import last_close
from scanner.models import Scan, ScanResult, ScanSkip
from scanner.services import scan_create
from tests.support.fake_polygon import Call, FakePolygon, no_results
from tests.support.polygon_workers import WORKER_PROCESSES, polygon_env
from tests.support.processes import SHORT_TIMEOUTS, Beat, RedisServer, Workers
from tests.support.waits import wait_finished, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CACHE_DB = 1
LOOKBACK = 500
FIRST_EVENING, NEXT_DAY, LAST_DAY = date(2018, 2, 5), date(2018, 2, 6), date(2018, 2, 7)
SCAN_TIMEOUT = 240  # seconds: a 505-symbol scan on a shared two-core machine
# The calendar request: POLYGON_CALENDAR_TICKER's bars from POLYGON_HISTORY_START (polygon_env).
CALENDAR = "/v2/aggs/ticker/AAPL/range/1/day/2013-01-01/"
KINDS = {
    "calendar": CALENDAR,
    "ticker": "/v2/aggs/ticker/",
    "grouped": "/v2/aggs/grouped/",
    "splits": "/v3/reference/splits",
}


def cache_url(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}/{CACHE_DB}"


@pytest.fixture(scope="module")
def own_broker(workers: Workers) -> Iterator[None]:
    """The shared workers stopped while this module runs, started again afterwards."""
    workers.stop()
    try:
        yield
    finally:
        workers.start()


@pytest.fixture
def store_workers(
    own_broker: None, workers: Workers, fake: FakePolygon, market_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Workers]:
    """Worker processes configured for the polygon provider, their price cache in CACHE_DB."""
    env = {**workers.env, **polygon_env(fake, market_dir), "CACHE_REDIS_URL": cache_url(redis_server)}
    pool = Workers(env, tmp_path / "worker.log", name="store")
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def here(polygon_here: DataSource, redis_server: RedisServer) -> Iterator[DataSource]:
    """This process configured like ``store_workers``, their price cache empty."""
    with override_settings(CACHE_REDIS_URL=cache_url(redis_server)):
        cache_client(redis_server).flushdb()
        yield polygon_here


def cache_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, db=CACHE_DB)


def window_first(fake: FakePolygon, as_of: date, lookback: int) -> date:
    days = fake.market_days()
    return days[days.index(as_of) + 1 - lookback]


def bars_held(fake: FakePolygon, symbols: Sequence[str], as_of: date, lookback: int) -> int:
    """How many bars the fake has of ``symbols`` in the ``lookback`` market days to ``as_of``."""
    first = window_first(fake, as_of, lookback)
    return sum(len(fake.aggregates(s, first, as_of)) for s in symbols)


@dataclass
class Scanned:
    """A finished scan and the requests the fake answered while it was created and ran."""

    scan: Scan
    calls: list[Call]
    closes: int
    """1 when an NYSE session closed (plus the store's settle time) since the calendar was last
    read: the workers' ``calendar()`` before a fetch is then stale, a read per worker process."""

    def requests(self) -> dict[str, int]:
        """The requests by kind (``ticker`` excludes the calendar's own per-ticker request)."""
        return by_kind(self.calls)

    def rows(self) -> dict[str, float]:
        return dict(ScanResult.objects.filter(scan=self.scan).values_list("symbol", "tech_rating"))


def by_kind(calls: Sequence[Call]) -> dict[str, int]:
    out = dict.fromkeys([*KINDS, "other"], 0)
    for call in calls:
        out[next((k for k, prefix in KINDS.items() if call.path.startswith(prefix)), "other")] += 1
    return out


def tickers_asked(calls: Sequence[Call]) -> list[str]:
    """The symbols of the per-ticker range requests among ``calls``, in order (not the calendar's)."""
    return [
        c.path.split("/")[4] for c in calls if c.path.startswith(KINDS["ticker"]) and not c.path.startswith(CALENDAR)
    ]


def assert_completed_with_each_symbol_once(scan: Scan) -> None:
    assert scan.status == "completed", f"{scan.status} {scan.error_code}: {scan.error_message}"
    results = list(ScanResult.objects.filter(scan=scan).values_list("symbol", flat=True))
    skips = list(ScanSkip.objects.filter(scan=scan).values_list("symbol", flat=True))
    assert sorted(results + skips) == sorted(symbol for symbol, _, _ in scan.universe)


def scan_on_workers(
    fake: FakePolygon, owner: tuple[Any, str], source: DataSource, batch_size: int = 100, **config: Any
) -> Scanned:
    """Create the scan here (its as_of resolved here, as the API does), wait for the workers to
    finish it, and require it completed with every symbol accounted for once."""
    mark, started = len(fake.calls()), timezone.now()
    read_at = MarketSource.objects.values_list("calendar_read_at", flat=True).first() or started
    made = scan_create(
        owner=owner[0], config=ScanConfig(min_tech_rating=0.0, **config), source=source, batch_size=batch_size
    )
    scan = wait_finished(made.id, SCAN_TIMEOUT)
    assert_completed_with_each_symbol_once(scan)
    closes = int(last_close(timezone.now()) > read_at)  # a session closed since the calendar was read
    return Scanned(scan, fake.calls()[mark:], closes)


def assert_requests(scanned: Scanned, calendar: int, ticker: int = 0, grouped: int = 0, splits: int = 0) -> None:
    """Exactly these requests. ``calendar`` counts this process's reads (resolving an as_of
    past the stored calendar's last day, or for an empty store); the workers read it only when a
    session closed meanwhile (see ``Scanned.closes``)."""
    got = scanned.requests()
    reads = got.pop("calendar")
    assert calendar <= reads <= calendar + WORKER_PROCESSES * scanned.closes, scanned.requests()
    assert got == {"ticker": ticker, "grouped": grouped, "splits": splits, "other": 0}


def test_the_store_costs_one_request_per_symbol_once_then_a_few_a_day(
    store_workers: Workers,
    fake: FakePolygon,
    here: DataSource,
    owner: tuple[Any, str],
    redis_server: RedisServer,
    real_instruments: list[Instrument],
) -> None:
    n = len(real_instruments)
    fake.show_until(FIRST_EVENING)
    MarketSource.objects.all().delete()  # polygon_here read the calendar with every day shown

    first = scan_on_workers(fake, owner, here, as_of=FIRST_EVENING, lookback_days=LOOKBACK)
    assert first.scan.total_symbols == n == 505
    # One per-ticker request per symbol (the store has none of their 500 days); the calendar
    # once, here, for the empty store; no splits to check before any bar is stored.
    assert_requests(first, calendar=1, ticker=n)
    assert "no_data" not in first.scan.metrics["skipped_by_reason"]
    assert StoredBar.objects.count() == bars_held(fake, [i.symbol for i in real_instruments], FIRST_EVENING, LOOKBACK)

    fake.show_until(NEXT_DAY)
    second = scan_on_workers(fake, owner, here, as_of=NEXT_DAY, lookback_days=LOOKBACK)
    # The day after: the calendar read again here (the wanted day is past its last one), the
    # splits since the last check, and the new day once for the whole market (six batches).
    assert second.scan.as_of == NEXT_DAY and len(second.calls) <= 8, second.requests()
    assert_requests(second, calendar=1, grouped=1, splits=1)
    assert StoredDay.objects.get(day=NEXT_DAY).rows == n

    shorter = scan_on_workers(fake, owner, here, as_of=date(2018, 1, 31), lookback_days=300)
    assert shorter.calls == []  # a shorter window at an earlier as_of: all stored

    cache_client(redis_server).flushdb()  # the price cache lost: the store still holds it all
    again = scan_on_workers(fake, owner, here, as_of=date(2018, 1, 31), lookback_days=300)
    assert again.calls == []
    assert again.rows() == shorter.rows() and len(again.rows()) > n / 2

    fake.show_until(LAST_DAY)
    fake.script(no_results(times=1))  # the new day's first grouped answer has no rows
    last = scan_on_workers(fake, owner, here, as_of=LAST_DAY, lookback_days=LOOKBACK)
    assert_requests(last, calendar=1, grouped=2, splits=1)
    assert last.scan.metrics["data_provider_calls"]["retried"] == 1
    assert "no_data" not in last.scan.metrics["skipped_by_reason"]
    grouped = {row["T"]: row["c"] for row in fake.grouped(LAST_DAY)}
    assert StoredDay.objects.get(day=LAST_DAY).rows == len(grouped) == n
    assert dict(StoredBar.objects.filter(day=LAST_DAY).values_list("symbol", "close")) == grouped


def split_adjusted(bars: Bars, ratio: float) -> Bars:
    """``bars`` at the level after a ``ratio``-for-one split (Polygon's adjusted history)."""
    return Bars(
        bars.dates, bars.open / ratio, bars.high / ratio, bars.low / ratio, bars.close / ratio, bars.volume * ratio
    )


def test_a_split_makes_the_store_fetch_that_symbols_history_again_adjusted(
    store_workers: Workers,
    fake: FakePolygon,
    here: DataSource,
    owner: tuple[Any, str],
    real_bars: dict[str, Bars],
    real_instruments: list[Instrument],
    real_calendar: np.ndarray,
) -> None:
    sector = ("Information Technology",)
    fake.show_until(NEXT_DAY)
    MarketSource.objects.all().delete()  # polygon_here read the calendar with every day shown
    before = scan_on_workers(fake, owner, here, batch_size=35, sectors=sector, as_of=NEXT_DAY, lookback_days=LOOKBACK)
    n = before.scan.total_symbols
    assert n == 70
    assert_requests(before, calendar=1, ticker=n)  # the calendar read by scan_create, in this process

    fake.split("AAPL", LAST_DAY, 1, 4)
    fake.show_until(LAST_DAY)
    config: dict[str, Any] = {"sectors": sector, "as_of": LAST_DAY, "lookback_days": LOOKBACK}
    after = scan_on_workers(fake, owner, here, batch_size=35, **config)
    # The calendar read for the new day, the split found, AAPL's whole history fetched again,
    # the new day for the others.
    assert_requests(after, calendar=1, ticker=1, grouped=1, splits=1)
    refetch = f"/v2/aggs/ticker/AAPL/range/1/day/{window_first(fake, NEXT_DAY, LOOKBACK)}/{LAST_DAY}"
    assert tickers_asked(after.calls) == ["AAPL"] and refetch in [c.path for c in after.calls]

    aapl = next(i for i in real_instruments if i.symbol == "AAPL")
    window = split_adjusted(real_bars["AAPL"].window(LAST_DAY, LOOKBACK), 4.0)
    expected = engine_scan_batch(
        [aapl], {"AAPL": window}, ScanConfig(min_tech_rating=0.0, **config), LAST_DAY, real_calendar
    ).rows[0]
    row = ScanResult.objects.get(scan=after.scan, symbol="AAPL").row
    fields = ("close", "tech_rating", *INDICATOR_FIELDS)
    assert {f: row[f] for f in fields} == pytest.approx({f: expected[f] for f in fields}, rel=1e-9)
    assert row["quality_flags"] == expected["quality_flags"]
    assert not [flag for flag in row["quality_flags"] if flag.startswith("large_move")]


def test_a_worker_killed_in_the_middle_of_a_fetch_leaves_each_bar_stored_once(
    own_broker: None,
    workers: Workers,
    fake: FakePolygon,
    market_dir: Path,
    polygon_here: DataSource,
    owner: tuple[Any, str],
    tmp_path: Path,
) -> None:
    as_of, batch_size = date(2018, 1, 31), 10
    env = {**workers.env, **polygon_env(fake, market_dir), **SHORT_TIMEOUTS}
    first, second = Workers(env, tmp_path / "w1.log", name="w1"), Workers(env, tmp_path / "w2.log", name="w2")
    beat = Beat(env, tmp_path)  # the watchdog resumes the scan if the kill lost a message for good
    first.start()
    beat.start()
    fake.latency = 0.05  # each request: so a batch of ten is in flight for a while
    try:
        config = ScanConfig(max_symbols=150, as_of=as_of, lookback_days=LOOKBACK, min_tech_rating=0.0)
        scan_id = scan_create(owner=owner[0], config=config, source=polygon_here, batch_size=batch_size).id
        wait_until(lambda: StoredBar.objects.exists(), 60, "the first fetched bars to be stored")
        assert Scan.objects.get(id=scan_id).data_fetching_ended_at is None, "the fetches were over"
        first.kill()
        second.start()
        scan = wait_finished(scan_id, 120)
    finally:
        fake.latency = 0.0
        for process in (first, second, beat):
            if process.process is not None:
                process.stop()

    assert_completed_with_each_symbol_once(scan)
    symbols = [symbol for symbol, _, _ in scan.universe]
    assert len(symbols) == 150

    stored = list(StoredBar.objects.values_list("symbol", "day"))
    assert len(stored) == len(set(stored)) == bars_held(fake, symbols, as_of, LOOKBACK)

    tickers = tickers_asked(fake.calls())
    assert set(tickers) == set(symbols)
    assert by_kind(fake.calls())["grouped"] == by_kind(fake.calls())["splits"] == 0  # an empty store: per ticker
    # Fetched again: at most the symbols of the batches the killed worker was running (one per
    # pool process), twice if the watchdog resumed the stage while they were redelivered.
    assert len(tickers) <= len(symbols) + 2 * WORKER_PROCESSES * batch_size
