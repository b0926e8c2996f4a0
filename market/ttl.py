"""How long each kind of cached data lives: a pure policy over the US equity session.

* **bars** ending on a finished trading day never change: they live ``finished_day``
  seconds. Bars ending today change while the market is open: they live ``market_hours``
  seconds (times ``volatile_factor`` for a volatile symbol); outside the session they cannot
  change before the next open, so they live until then (at least ``closed_minimum``).
* **universe** (the provider's symbol list with sectors) changes rarely: ``universe`` seconds,
  ``universe_market_hours`` while the market is open (listings change during the session).
* **results** of a finished scan never change: ``results`` seconds, only to bound memory.

The session is Monday to Friday, 09:30 to 16:00 America/New_York; exchange holidays count as
trading days (their bars then simply live the shorter TTL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MARKET_TZ = ZoneInfo("America/New_York")
OPEN, CLOSE = time(9, 30), time(16, 0)


@dataclass(frozen=True)
class TtlPolicy:
    market_hours: int = 300
    volatile_factor: float = 0.5
    volatile_vol: float = 0.60  # annualised 20-day realised volatility from which a symbol is volatile
    finished_day: int = 7 * 86400
    closed_minimum: int = 300
    universe: int = 86400
    universe_market_hours: int = 6 * 3600
    results: int = 3600


def market_open(now: datetime) -> bool:
    """Whether the US equity session is in progress at ``now`` (timezone-aware)."""
    local = now.astimezone(MARKET_TZ)
    return local.weekday() < 5 and OPEN <= local.time() < CLOSE


def next_open(now: datetime) -> datetime:
    """The start of the next session strictly after ``now``."""
    local = now.astimezone(MARKET_TZ)
    day = local.date()
    while True:
        candidate = datetime.combine(day, OPEN, tzinfo=MARKET_TZ)
        if candidate > local and candidate.weekday() < 5:
            return candidate
        day += timedelta(days=1)


def bars_ttl(as_of: date, now: datetime, volatility: float | None, policy: TtlPolicy) -> int:
    """Seconds to keep a symbol's bars ending on ``as_of``; ``volatility`` is its annualised
    20-day realised volatility (None when unknown: not treated as volatile)."""
    if as_of < now.astimezone(MARKET_TZ).date():
        return policy.finished_day
    if market_open(now):
        volatile = volatility is not None and volatility >= policy.volatile_vol
        return max(1, int(policy.market_hours * (policy.volatile_factor if volatile else 1.0)))
    return max(policy.closed_minimum, int((next_open(now) - now).total_seconds()))


def volatility_matters(as_of: date, now: datetime) -> bool:
    """Whether ``bars_ttl`` looks at the volatility of bars ending on ``as_of`` at ``now``
    (only those of today's session while it is open), so callers can skip computing it."""
    return as_of >= now.astimezone(MARKET_TZ).date() and market_open(now)


def universe_ttl(now: datetime, policy: TtlPolicy) -> int:
    return policy.universe_market_hours if market_open(now) else policy.universe


def results_ttl(policy: TtlPolicy) -> int:
    return policy.results
