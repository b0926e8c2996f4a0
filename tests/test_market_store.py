"""The market data store against the fake Polygon server (real bars) and the test database:
what it asks the provider for, and that what it serves equals the provider's bars."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.types import Bars
from market import bar_rows
from market.models import StoredBar, SymbolCoverage
from market.providers import PolygonConfig, PolygonProvider
from market.providers.resilience import Resilience, RetryPolicy
from market.providers.state_stores import RedisStateStore
from market.sources import resolve_as_of
from market.store import MarketStore, StoredProvider, plan, session_closed
from market.upkeep import coverage
from tests.support.fake_polygon import API_KEY, FakePolygon, no_results
from tests.support.processes import RedisServer

pytestmark = pytest.mark.django_db

AS_OF = date(2018, 1, 31)
LOOKBACK = 300
SYMBOLS = ["AAPL", "MSFT", "XOM", "JPM", "GE", "KO"]
AFTER_THE_DATA = datetime(2026, 12, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def fake(market_dir: Path) -> Iterator[FakePolygon]:
    server = FakePolygon(market_dir)
    yield server
    server.stop()


@pytest.fixture
def remote(fake: FakePolygon, redis_server: RedisServer, market_dir: Path) -> Iterator[PolygonProvider]:
    fake.reset()
    config = PolygonConfig(
        API_KEY, fake.url, calendar_ticker="AAPL", history_start=date(2013, 1, 1), connect_timeout=1, read_timeout=2
    )
    state = RedisStateStore(redis_server.client(), f"technic-test-{uuid.uuid4().hex[:8]}", "polygon")
    resilience = Resilience.build(state, "Polygon", RetryPolicy(2, 0.01, 0.05), 0, 50, 1.0, probe_ttl=3.0)
    yield PolygonProvider(config, resilience, market_dir / "constituents.csv")
    fake.reset()


def stored(remote: PolygonProvider, now: datetime = AFTER_THE_DATA) -> StoredProvider:
    provider = StoredProvider(remote, f"polygon:test-{uuid.uuid4().hex[:8]}")
    provider.store.clock = lambda: now
    return provider


def requests(fake: FakePolygon) -> dict[str, int]:
    """The requests the fake answered, by kind (the calendar is AAPL's bars since 2013-01-01)."""
    kinds = {"calendar": "/v2/aggs/ticker/AAPL/range/1/day/2013-01-01/", "ticker": "/v2/aggs/ticker/"}
    kinds |= {"grouped": "/v2/aggs/grouped/", "splits": "/v3/reference/splits"}
    out = dict.fromkeys(kinds, 0)
    for call in fake.calls():
        kind = next((k for k, prefix in kinds.items() if call.path.startswith(prefix)), "other")
        out[kind] = out.get(kind, 0) + 1
    return out


def same_bars(a: Bars, b: Bars) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("dates", "open", "high", "low", "close"))


def test_a_window_is_fetched_once_then_served_from_the_store(
    remote: PolygonProvider, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    provider = stored(remote)
    bars, failures = provider.bars_and_failures([*SYMBOLS, "NOPE"], AS_OF, LOOKBACK)
    assert failures == {}
    assert set(bars) == set(SYMBOLS)  # a symbol the provider has no bars of is absent
    for symbol in SYMBOLS:
        assert same_bars(bars[symbol], real_bars[symbol].window(AS_OF, LOOKBACK))
    first = requests(fake)
    assert first == {"calendar": 1, "ticker": len(SYMBOLS) + 1, "grouped": 0, "splits": 0}  # and NOPE

    fake.reset()
    again, _ = provider.bars_and_failures([*SYMBOLS, "NOPE"], AS_OF, LOOKBACK)
    shorter, _ = provider.bars_and_failures(SYMBOLS, AS_OF, 50)
    earlier, _ = provider.bars_and_failures(SYMBOLS, date(2017, 11, 30), 200)
    assert fake.calls() == []  # the same window, a shorter one, an earlier one: all stored
    assert all(same_bars(again[s], bars[s]) for s in SYMBOLS)
    assert same_bars(shorter["KO"], real_bars["KO"].window(AS_OF, 50))
    assert same_bars(earlier["GE"], real_bars["GE"].window(date(2017, 11, 30), 200))


def test_bars_are_stored_once_however_often_they_are_fetched(remote: PolygonProvider) -> None:
    provider = stored(remote)
    provider.bars(["AAPL"], AS_OF, 100)
    source = provider.store.source()
    SymbolCoverage.objects.filter(source=source).delete()  # as if a redelivered batch fetched again
    provider.bars(["AAPL"], AS_OF, 100)
    assert StoredBar.objects.filter(source=source, symbol="AAPL").count() == 100


def test_a_later_answer_replaces_a_stored_bar(remote: PolygonProvider, real_bars: dict[str, Bars]) -> None:
    provider = stored(remote)
    source = provider.store.source()
    first = real_bars["KO"].window(AS_OF, 3)
    later = Bars(first.dates, first.open, first.high, first.low, first.close + 1.0, first.volume * 2)
    assert bar_rows.write(source.pk, [("KO", first)]) == 3
    assert bar_rows.write(source.pk, [("KO", later)]) == 3
    stored_bars = StoredBar.objects.filter(source=source, symbol="KO").order_by("day")
    assert [b.close for b in stored_bars] == later.close.tolist()
    assert [b.volume for b in stored_bars] == later.volume.tolist()


def test_days_missing_for_many_symbols_cost_one_grouped_request_each(
    remote: PolygonProvider, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    provider = stored(remote)
    provider.bars(SYMBOLS, date(2018, 1, 26), LOOKBACK)
    fake.reset()
    bars = provider.bars(SYMBOLS, AS_OF, LOOKBACK)  # three market days later
    # no splits check: the first fetch was already adjusted up to the calendar's last day
    assert requests(fake) == {"calendar": 0, "ticker": 0, "grouped": 3, "splits": 0}
    for symbol in SYMBOLS:
        assert same_bars(bars[symbol], real_bars[symbol].window(AS_OF, LOOKBACK))


def test_a_grouped_day_answering_no_rows_is_retried_and_never_stored_as_no_bars(
    remote: PolygonProvider, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    provider = stored(remote)
    provider.bars(SYMBOLS, date(2018, 1, 30), LOOKBACK)
    fake.reset()
    fake.script(no_results(times=1))
    bars, failures = provider.bars_and_failures(SYMBOLS, AS_OF, LOOKBACK)
    assert failures == {}
    assert all(bars[s].dates[-1] == np.datetime64(AS_OF) for s in SYMBOLS)
    assert requests(fake)["grouped"] == 2


def test_a_day_stored_while_its_session_was_open_is_fetched_again_after_the_close(
    remote: PolygonProvider, fake: FakePolygon
) -> None:
    during = datetime(2018, 1, 31, 15, tzinfo=UTC)  # 10:00 in New York: the session of AS_OF is open
    provider = stored(remote, now=during)
    provider.bars(["AAPL"], AS_OF, 20)
    assert SymbolCoverage.objects.get(source=provider.store.source(), symbol="AAPL").known_to == date(2018, 1, 30)
    fake.reset()
    provider.bars(["AAPL"], AS_OF, 20)
    assert requests(fake)["ticker"] + requests(fake)["grouped"] == 1  # still open: asked again
    provider.store.clock = lambda: datetime(2018, 1, 31, 21, 30, tzinfo=UTC)  # 16:30 New York
    provider.bars(["AAPL"], AS_OF, 20)
    assert SymbolCoverage.objects.get(source=provider.store.source(), symbol="AAPL").known_to == AS_OF
    fake.reset()
    provider.bars(["AAPL"], AS_OF, 20)
    assert fake.calls() == []


def test_the_next_market_day_costs_its_grouped_request_the_calendar_and_the_splits(
    remote: PolygonProvider, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    fake.show_until(date(2018, 1, 30))
    provider = stored(remote)
    assert provider.date_range()[1] == date(2018, 1, 30)
    provider.bars(SYMBOLS, date(2018, 1, 30), LOOKBACK)
    fake.reset()
    fake.show_until(AS_OF)  # the next session closes
    provider.store.clock = lambda: AFTER_THE_DATA + timedelta(minutes=2)
    assert resolve_as_of(provider, AS_OF) == AS_OF  # past the calendar's last day: it is read again
    bars = provider.bars(SYMBOLS, AS_OF, LOOKBACK)
    assert requests(fake) == {"calendar": 1, "ticker": 0, "grouped": 1, "splits": 1}
    for symbol in SYMBOLS:
        assert same_bars(bars[symbol], real_bars[symbol].window(AS_OF, LOOKBACK))


def test_a_split_symbol_is_fetched_again_so_its_history_is_at_one_level(
    remote: PolygonProvider, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    fake.show_until(date(2018, 1, 30))
    provider = stored(remote)
    provider.bars(SYMBOLS, date(2018, 1, 30), LOOKBACK)
    fake.reset()
    fake.show_until(AS_OF)
    fake.split("AAPL", AS_OF, 1, 4)
    provider.store.clock = lambda: AFTER_THE_DATA + timedelta(minutes=2)
    bars = provider.bars(SYMBOLS, AS_OF, LOOKBACK)
    assert requests(fake) == {"calendar": 1, "ticker": 1, "grouped": 1, "splits": 1}
    real = real_bars["AAPL"].window(AS_OF, LOOKBACK)
    assert np.array_equal(bars["AAPL"].dates, real.dates)
    for field in ("open", "high", "low", "close"):
        assert np.allclose(getattr(bars["AAPL"], field), getattr(real, field) / 4, rtol=1e-12)
    assert np.allclose(bars["AAPL"].volume, real.volume * 4)
    assert same_bars(bars["MSFT"], real_bars["MSFT"].window(AS_OF, LOOKBACK))  # others untouched
    fake.reset()
    fake.show_until(AS_OF)
    fake.split("AAPL", AS_OF, 1, 4)
    provider.bars(SYMBOLS, AS_OF, LOOKBACK)
    assert fake.calls() == []  # a split is applied once


def test_a_split_after_the_window_is_applied_before_older_days_are_fetched(
    remote: PolygonProvider, fake: FakePolygon, real_bars: dict[str, Bars]
) -> None:
    """An earlier ``as_of`` with a longer lookback, after a later split: the older days come
    adjusted for it, so the stored ones are fetched again first; one level throughout."""
    eve = date(2018, 2, 6)
    fake.show_until(eve)
    provider = stored(remote)
    provider.bars(["AAPL"], eve, 300)
    fake.reset()
    fake.show_until(date(2018, 2, 7))
    fake.split("AAPL", date(2018, 2, 7), 1, 4)
    provider.store.clock = lambda: AFTER_THE_DATA + timedelta(days=2)  # a session has closed since
    window = provider.bars(["AAPL"], eve, 500)["AAPL"]
    # the calendar, the splits, AAPL's history again, then its older days
    assert requests(fake) == {"calendar": 1, "ticker": 2, "grouped": 0, "splits": 1}
    real = real_bars["AAPL"].window(eve, 500)
    assert np.array_equal(window.dates, real.dates)
    assert np.allclose(window.close, real.close / 4, rtol=1e-12)


def test_the_calendar_is_read_once_per_close_and_when_a_later_day_is_asked_for(
    remote: PolygonProvider, fake: FakePolygon, settings: Any
) -> None:
    settings.TECHNIC_MARKETDATA_CALENDAR_INTERVAL = 0
    provider = stored(remote)
    assert provider.date_range() == (date(2013, 2, 8), date(2018, 2, 7))
    provider.date_range()
    assert requests(fake)["calendar"] == 1  # read after the last close: still good
    provider.date_range(date(2018, 2, 8))  # past its last day: read again
    assert requests(fake)["calendar"] == 2
    settings.TECHNIC_MARKETDATA_CALENDAR_INTERVAL = 60
    provider.date_range(date(2018, 2, 8))  # again within the interval: not read
    assert requests(fake)["calendar"] == 2


def test_coverage_reports_symbols_bars_and_days_missing(remote: PolygonProvider) -> None:
    provider = stored(remote)
    provider.bars(["AAPL", "KO"], AS_OF, 100)
    row = next(c for c in coverage() if c["source"] == provider.store.key)
    assert (row["symbols"], row["bars"], row["days_missing"]) == (2, 200, 0)
    assert (row["last_day"], row["calendar_last_day"]) == ("2018-01-31", "2018-02-07")


# --- planning -------------------------------------------------------------------------------


def days(n: int, start: date = date(2018, 1, 2)) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def test_plan_asks_per_ticker_for_long_gaps_and_grouped_for_days_many_lack() -> None:
    first_scan = plan({f"S{i}": days(500) for i in range(505)}, grouped_weight=2)
    assert (len(first_scan.ranges), first_scan.days) == (505, [])
    next_day = plan({f"S{i}": days(1, date(2018, 2, 8)) for i in range(505)}, grouped_weight=2)
    assert (next_day.ranges, next_day.days) == ({}, [date(2018, 2, 8)])
    split = plan({**{f"S{i}": days(1, date(2018, 2, 8)) for i in range(504)}, "AAPL": days(500)}, grouped_weight=2)
    assert (list(split.ranges), split.days, split.requests()) == (["AAPL"], [date(2018, 2, 8)], 2)
    assert plan({"A": [], "B": []}, grouped_weight=2).requests() == 0


def test_a_session_counts_as_closed_a_while_after_the_new_york_close() -> None:
    day = date(2018, 1, 31)
    assert not session_closed(day, datetime(2018, 1, 31, 21, 5, tzinfo=UTC))  # 16:05 New York
    assert session_closed(day, datetime(2018, 1, 31, 21, 20, tzinfo=UTC))
    assert session_closed(date(2018, 1, 27), datetime(2018, 1, 28, 6, tzinfo=UTC))  # a Saturday, once over


def test_a_store_needs_a_remote_calendar_before_anything(remote: PolygonProvider, fake: FakePolygon) -> None:
    store = MarketStore(f"polygon:test-{uuid.uuid4().hex[:8]}", remote, clock=lambda: AFTER_THE_DATA)
    assert store.calendar().size > 1000
    assert requests(fake)["calendar"] == 1
