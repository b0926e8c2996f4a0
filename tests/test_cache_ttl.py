"""The price cache's TTL policy and status badge (pure: no Redis)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from market.stats import badge
from market.ttl import (
    MARKET_TZ,
    TtlPolicy,
    bars_ttl,
    market_open,
    next_open,
    results_ttl,
    universe_ttl,
    volatility_matters,
)

POLICY = TtlPolicy()


def et(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A New York wall-clock time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=MARKET_TZ)


WEDNESDAY = date(2026, 11, 18)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (et(2026, 11, 18, 9, 29), False),
        (et(2026, 11, 18, 9, 30), True),
        (et(2026, 11, 18, 15, 59), True),
        (et(2026, 11, 18, 16, 0), False),
        (et(2026, 11, 21, 12, 0), False),  # Saturday
    ],
)
def test_the_session_runs_weekdays_from_half_past_nine_to_four_new_york_time(moment: datetime, is_open: bool) -> None:
    assert market_open(moment) is is_open


def test_the_next_open_after_friday_close_is_monday_morning() -> None:
    assert next_open(et(2026, 11, 20, 16, 30)) == et(2026, 11, 23, 9, 30)
    assert next_open(et(2026, 11, 18, 8, 0)) == et(2026, 11, 18, 9, 30)


def test_bars_ending_on_a_finished_trading_day_live_longest() -> None:
    during_session = et(2026, 11, 18, 11, 0)
    assert bars_ttl(date(2026, 11, 17), during_session, None, POLICY) == POLICY.finished_day
    assert bars_ttl(date(2018, 1, 31), during_session, 1.5, POLICY) == POLICY.finished_day


def test_todays_bars_during_the_session_are_short_lived_and_shorter_for_volatile_symbols() -> None:
    now = et(2026, 11, 18, 11, 0)
    calm = bars_ttl(WEDNESDAY, now, 0.20, POLICY)
    volatile = bars_ttl(WEDNESDAY, now, 0.90, POLICY)
    assert calm == POLICY.market_hours
    assert volatile == int(POLICY.market_hours * POLICY.volatile_factor)
    assert volatile < calm < POLICY.finished_day
    assert bars_ttl(WEDNESDAY, now, None, POLICY) == calm  # unknown volatility is not called volatile


@pytest.mark.parametrize("hour", [0, 9, 10, 12, 15, 16, 17, 23])
@pytest.mark.parametrize("day", [17, 18, 19, 21])  # Tuesday to Thursday, Saturday
def test_volatility_matters_exactly_when_the_ttl_depends_on_it(day: int, hour: int) -> None:
    now = et(2026, 11, day, hour, 15)
    for as_of in (date(2026, 11, 17), WEDNESDAY, date(2026, 11, 21)):
        depends = len({bars_ttl(as_of, now, vol, POLICY) for vol in (None, 0.1, 0.9)}) > 1
        assert volatility_matters(as_of, now) is depends, (as_of, now)


def test_todays_bars_after_the_close_live_until_the_next_open() -> None:
    after_close = et(2026, 11, 18, 17, 0)
    assert bars_ttl(WEDNESDAY, after_close, 0.9, POLICY) == int((et(2026, 11, 19, 9, 30) - after_close).total_seconds())
    friday_close = et(2026, 11, 20, 16, 0)
    assert bars_ttl(date(2026, 11, 20), friday_close, None, POLICY) == 2 * 86400 + 17 * 3600 + 30 * 60


def test_bars_just_before_the_open_keep_the_minimum_ttl() -> None:
    assert bars_ttl(WEDNESDAY, et(2026, 11, 18, 9, 29, 30), None, POLICY) == POLICY.closed_minimum


def test_the_universe_lives_shorter_during_the_session_and_results_a_fixed_time() -> None:
    assert universe_ttl(et(2026, 11, 18, 11, 0), POLICY) == POLICY.universe_market_hours < POLICY.universe
    assert universe_ttl(et(2026, 11, 18, 20, 0), POLICY) == POLICY.universe
    assert results_ttl(TtlPolicy(results=42)) == 42


@pytest.mark.parametrize(
    ("hit_rate", "expected"),
    [
        (None, "idle"),
        (100.0, "excellent"),
        (80.0, "excellent"),
        (79.9, "good"),
        (50.0, "good"),
        (49.9, "poor"),
        (0.0, "poor"),
    ],
)
def test_the_badge_follows_the_hit_rate(hit_rate: float | None, expected: str) -> None:
    assert badge(hit_rate) == expected
