"""The market data store: each bar of a remote provider fetched once, kept in the database.

``StoredProvider`` is the provider scans see for a remote source: it answers windows from the
store (``market.models``) and asks the remote provider (a :class:`Remote`) only for what the
store lacks, the cheapest way (``plan``): one grouped-daily request per missing market day for
every symbol that needs it, or one per-ticker range request per symbol, or both. The Redis
price cache stays in front of it for windows; losing Redis costs no request.

Rules the store keeps:

* A market day is known (for a symbol, or for the whole market after a grouped request) only
  once its session has closed (``session_closed``), so a bar stored while the session was
  open is fetched again, and replaced, after the close.
* The market calendar is the provider's, kept in the store. It is read again when a scan asks
  for a day past its last day, and for the latest day when a session has closed since it was
  read; at most once per ``TECHNIC_MARKETDATA_CALENDAR_INTERVAL`` seconds per source.
* Splits: once the calendar passes the day splits were checked through, the next window asks the
  provider for the splits since then, up to the calendar's last day whatever the window's end
  (a fetch answers bars adjusted up to the provider's latest day; before one the calendar is
  brought up to the last close). A split symbol's stored bars and coverage are dropped, so its
  whole history is fetched again adjusted and prices never mix levels.
* Concurrent batches of a scan do not fetch the same day twice: a grouped day is fetched under
  a lock in the cache's Redis (without Redis they may, and the unique key writes it once).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, Protocol

import exchange_calendars
import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from engine.types import Bars, Instrument
from market import bar_rows
from market import cache as redis_cache
from market.models import MarketSource, StoredBar, StoredDay, SymbolCoverage
from market.providers.base import DataProviderError, Split, calendar_range, check_lookback
from market.providers.resilience import RequestFailed

logger = logging.getLogger(__name__)

SETTLE = timedelta(minutes=15)
"""After a session's close, how long until its bars are final at the provider."""
DAY_LOCK_SECONDS = 300
RANGE_BATCH = 25
"""Symbols per batch of per-ticker requests, written before the next: a stop (budget spent,
breaker open, worker killed) loses at most one batch's answers."""


class Remote(Protocol):
    """What the store asks of a remote provider (``market.providers.polygon`` is one)."""

    name: str
    grouped_weight: int

    def instruments(self) -> list[Instrument]: ...

    def read_calendar(self) -> np.ndarray: ...

    def fetch_ranges(
        self, symbols: Sequence[str], first: date, last: date
    ) -> tuple[dict[str, Bars], dict[str, str]]: ...

    def fetch_days(self, days: Sequence[date]) -> tuple[dict[date, dict[str, Bars]], dict[date, str]]: ...

    def splits(self, after: date, through: date) -> list[Split]: ...


@cache
def _exchange() -> Any:
    return exchange_calendars.get_calendar("XNYS")


def exchange_zone() -> Any:
    """The NYSE's time zone (America/New_York)."""
    return _exchange().tz


def trading_day(day: date) -> bool:
    """Whether ``day`` is an NYSE session."""
    exchange = _exchange()
    return bool(exchange.first_session.date() <= day <= exchange.last_session.date() and exchange.is_session(day))


def session_closed(day: date, now: datetime) -> bool:
    """Whether ``day``'s bars are final at ``now``: its NYSE session closed at least SETTLE ago
    (a day that is no NYSE session: once it is over in New York)."""
    exchange = _exchange()
    if trading_day(day):
        return bool(exchange.session_close(day).to_pydatetime() + SETTLE <= now)
    return day < now.astimezone(exchange.tz).date()


def last_close(now: datetime) -> datetime:
    """When the latest NYSE session that has closed by ``now`` closed (plus SETTLE)."""
    return _exchange().previous_close(now - SETTLE).to_pydatetime() + SETTLE


@dataclass
class Plan:
    """How to fill what a set of symbols lacks: per-ticker ranges, grouped days."""

    ranges: dict[str, tuple[date, date]] = field(default_factory=dict)
    days: list[date] = field(default_factory=list)

    def requests(self) -> int:
        return len(self.ranges) + len(self.days)


def plan(missing: Mapping[str, Sequence[date]], grouped_weight: int) -> Plan:
    """The cheapest mix: symbols missing more than some ``k`` days get one per-ticker request
    each (spanning their missing days), the days the others miss one grouped request each (a
    grouped request costs ``grouped_weight``); ``k`` is chosen to minimise the cost, then the
    number of requests."""
    needy = {s: sorted(days) for s, days in missing.items() if days}
    if not needy:
        return Plan()
    best: tuple[int, int, int] | None = None  # (cost, requests, k): on equal cost, fewer requests
    for k in sorted({0, *(len(days) for days in needy.values())}):
        grouped = len({d for days in needy.values() if len(days) <= k for d in days})
        tickers = sum(len(days) > k for days in needy.values())
        candidate = (tickers + grouped_weight * grouped, tickers + grouped, k)
        if best is None or candidate < best:
            best = candidate
    assert best is not None
    k = best[2]
    out = Plan()
    out.days = sorted({d for days in needy.values() if len(days) <= k for d in days})
    out.ranges = {s: (days[0], days[-1]) for s, days in needy.items() if len(days) > k}
    return out


class MarketStore:
    """The stored bars of one remote source, filled from ``remote`` when asked for."""

    def __init__(self, key: str, remote: Remote, clock: Callable[[], datetime] = timezone.now) -> None:
        self.key = key
        self.remote = remote
        self.clock = clock
        self._calendar: tuple[Any, np.ndarray] | None = None

    # --- the calendar ---------------------------------------------------------------------

    def source(self) -> MarketSource:
        return MarketSource.objects.get_or_create(key=self.key)[0]

    def calendar(self, wanted: date | None = None) -> np.ndarray:
        """The market days. Read from the provider again when ``wanted`` is past the last day,
        or (``wanted`` None: the latest is wanted) a session closed since the last read; not
        more often than TECHNIC_MARKETDATA_CALENDAR_INTERVAL seconds. Raises DataProviderError
        when there is no calendar at all."""
        row = self.source()
        days = self._decoded(row)
        now = self.clock()
        if days.size == 0:
            stale = True
        elif wanted is not None:
            stale = wanted > days[-1].astype(object)
        else:
            stale = row.calendar_read_at is None or row.calendar_read_at < last_close(now)
        interval = timedelta(seconds=settings.TECHNIC_MARKETDATA_CALENDAR_INTERVAL)
        recently = row.calendar_read_at is not None and now - row.calendar_read_at < interval
        if stale and (days.size == 0 or not recently):
            days = self.remote.read_calendar()
            MarketSource.objects.filter(pk=row.pk).update(
                calendar=[int(d) for d in days.astype(np.int64)], calendar_read_at=now
            )
            self._calendar = None
        return days

    def _decoded(self, row: MarketSource) -> np.ndarray:
        if self._calendar is None or self._calendar[0] != (row.calendar_read_at, len(row.calendar)):
            days = np.array(row.calendar, dtype=np.int64).astype("datetime64[D]")
            days.flags.writeable = False
            self._calendar = ((row.calendar_read_at, len(row.calendar)), days)
        return self._calendar[1]

    # --- windows ----------------------------------------------------------------------------

    def window(self, symbols: Sequence[str], as_of: date, lookback: int) -> tuple[dict[str, Bars], dict[str, str]]:
        """Each symbol's bars of the ``lookback`` market days ending on ``as_of`` (symbols without
        any are absent), fetching what the store lacks first; ``{symbol: error}`` for those whose
        fetch failed. Raises when nothing more may be sent (breaker open, budget spent)."""
        check_lookback(lookback)
        wanted = list(dict.fromkeys(symbols))
        calendar = self.calendar(as_of)
        end = int(np.searchsorted(calendar, np.datetime64(as_of, "D"), side="right"))
        days = calendar[max(0, end - lookback) : end]
        if not wanted or days.size == 0:
            return {}, {}
        source = self.source()
        missing = self.missing(source, wanted, days)
        # What the provider answers now is adjusted for every split up to its latest day, not
        # only up to this window's: before fetching, the calendar is brought up to the last
        # close and the splits up to its last day are applied, so fetched bars never join
        # stored ones at another level.
        checked = source.splits_through
        self._apply_splits(source, (self.calendar() if missing else calendar)[-1].astype(object))
        if source.splits_through != checked:  # a split may have dropped a symbol's bars
            missing = self.missing(source, wanted, days)
        failures = self._fill_missing(source, missing, days)
        return self.read(source, [s for s in wanted if s not in failures], days), failures

    def fill(self, source: MarketSource, symbols: Sequence[str], days: np.ndarray) -> dict[str, str]:
        """Fetch what ``symbols`` lack of ``days``; returns ``{symbol: error}`` of failed fetches."""
        return self._fill_missing(source, self.missing(source, symbols, days), days)

    def _fill_missing(
        self, source: MarketSource, missing: Mapping[str, Sequence[date]], days: np.ndarray
    ) -> dict[str, str]:
        todo = plan(missing, self.remote.grouped_weight)
        failures: dict[str, str] = {}
        if todo.days:
            failed_days = self._fetch_days(source, todo.days)
            for symbol, lacking in missing.items():
                bad = next((d for d in lacking if d in failed_days), None)
                if bad is not None and symbol not in todo.ranges:
                    failures[symbol] = f"bars of {bad} could not be fetched: {failed_days[bad]}"
        if todo.ranges:
            failures.update(self._fetch_ranges(source, todo.ranges, days))
        return failures

    def missing(self, source: MarketSource, symbols: Sequence[str], days: np.ndarray) -> dict[str, list[date]]:
        """The days of ``days`` the store does not know for each symbol (only those lacking any)."""
        first, last = days[0].astype(object), days[-1].astype(object)
        stored = set(StoredDay.objects.filter(source=source, day__range=(first, last)).values_list("day", flat=True))
        known = {
            c.symbol: (c.known_from, c.known_to)
            for c in SymbolCoverage.objects.filter(source=source, symbol__in=symbols)
        }
        window = [d.astype(object) for d in days]
        out: dict[str, list[date]] = {}
        for symbol in symbols:
            lo, hi = known.get(symbol, (None, None))
            lacking = [d for d in window if d not in stored and not (lo is not None and lo <= d <= hi)]
            if lacking:
                out[symbol] = lacking
        return out

    def read(self, source: MarketSource, symbols: Sequence[str], days: np.ndarray) -> dict[str, Bars]:
        """The stored bars of ``symbols`` within ``days``, in one query, straight into arrays (no
        date object or tuple per bar on PostgreSQL, no date object elsewhere)."""
        if not symbols:
            return {}
        wanted = list(dict.fromkeys(symbols))
        index, numbers, values = bar_rows.read(source.pk, wanted, days[0].astype(object), days[-1].astype(object))
        if index.size == 0:
            return {}
        dates = numbers.astype("datetime64[D]")
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        ends = np.r_[starts[1:], index.size]
        return {
            wanted[int(index[a])]: Bars(dates[a:b], *(values[a:b, k].astype(np.float64) for k in range(5)))
            for a, b in zip(starts, ends, strict=True)
        }

    # --- fetching ---------------------------------------------------------------------------

    def _fetch_ranges(
        self, source: MarketSource, ranges: Mapping[str, tuple[date, date]], days: np.ndarray
    ) -> dict[str, str]:
        """Per-ticker requests, grouped by range, RANGE_BATCH symbols at a time; each symbol's
        coverage grows to what it asked."""
        calendar = self.calendar(days[-1].astype(object))
        by_range: dict[tuple[date, date], list[str]] = {}
        known = {c.symbol: c for c in SymbolCoverage.objects.filter(source=source, symbol__in=list(ranges))}
        for symbol, (lo, hi) in ranges.items():
            lo, hi = _bridged(lo, hi, known.get(symbol), calendar)
            by_range.setdefault((lo, hi), []).append(symbol)
        failures: dict[str, str] = {}
        now = self.clock()
        for (lo, hi), group in by_range.items():
            final_to = _last_closed(calendar, lo, hi, now)
            for at in range(0, len(group), RANGE_BATCH):
                symbols = group[at : at + RANGE_BATCH]
                got, failed = self.remote.fetch_ranges(symbols, lo, hi)
                failures.update(failed)
                bar_rows.write(source.pk, got.items())
                if final_to is not None:
                    self._cover(source, [s for s in symbols if s not in failed], lo, final_to, known)
        return failures

    def _fetch_days(self, source: MarketSource, days: Sequence[date]) -> dict[date, str]:
        """Grouped requests for ``days``, each under a lock so concurrent batches ask once; days
        another process is fetching are waited for. Returns ``{day: error}`` of failed days."""
        failed: dict[date, str] = {}
        pending = list(days)
        deadline = time.monotonic() + DAY_LOCK_SECONDS
        while pending:
            stored = set(StoredDay.objects.filter(source=source, day__in=pending).values_list("day", flat=True))
            pending = [d for d in pending if d not in stored]
            if not pending:
                break
            with _day_locks(self.key, pending) as mine:
                if mine:
                    failed.update(self._grouped(source, mine))
                pending = [d for d in pending if d not in mine]
            if pending:
                if time.monotonic() > deadline:
                    failed.update(dict.fromkeys(pending, "another process kept fetching it"))
                    break
                time.sleep(0.05)  # another batch is fetching these days: take what it writes
        return failed

    def _grouped(self, source: MarketSource, days: Sequence[date]) -> dict[date, str]:
        got, failed = self.remote.fetch_days(days)
        now = self.clock()
        for day, by_symbol in got.items():
            bar_rows.write(source.pk, by_symbol.items())
            if session_closed(day, now):  # while the session is open the day stays unknown: fetched again
                StoredDay.objects.update_or_create(source=source, day=day, defaults={"rows": len(by_symbol)})
        return failed

    @staticmethod
    def _cover(
        source: MarketSource, symbols: Sequence[str], lo: date, hi: date, known: Mapping[str, SymbolCoverage]
    ) -> None:
        with transaction.atomic():
            for symbol in symbols:
                had = known.get(symbol)
                lo_s, hi_s = (min(lo, had.known_from), max(hi, had.known_to)) if had else (lo, hi)
                SymbolCoverage.objects.update_or_create(
                    source=source, symbol=symbol, defaults={"known_from": lo_s, "known_to": hi_s}
                )

    # --- corrections ------------------------------------------------------------------------

    def _apply_splits(self, source: MarketSource, through: date) -> None:
        """Fetch again the history of symbols split after ``splits_through`` up to ``through``."""
        if source.splits_through is not None and through <= source.splits_through:
            return
        if source.splits_through is None and not StoredBar.objects.filter(source=source).exists():
            MarketSource.objects.filter(pk=source.pk).update(splits_through=through)  # nothing to correct yet
            source.splits_through = through
            return
        deadline = time.monotonic() + DAY_LOCK_SECONDS
        while True:
            with lock(f"store:{self.key}:splits", DAY_LOCK_SECONDS) as mine:
                if mine:
                    self._splits_under_lock(source, through)
                    return
            source.refresh_from_db()  # another batch is applying them: wait for it
            if source.splits_through is not None and through <= source.splits_through:
                return
            if time.monotonic() > deadline:
                raise DataProviderError(f"splits of {self.key} through {through}: another process kept checking them")
            time.sleep(0.05)

    def _splits_under_lock(self, source: MarketSource, through: date) -> None:
        source.refresh_from_db()
        if source.splits_through is not None and through <= source.splits_through:
            return
        after = source.splits_through or through - timedelta(days=1)
        try:
            splits = self.remote.splits(after, through)
        except RequestFailed as err:  # asked again with the next window; the bars stay as they are
            logger.warning("store %s: splits after %s not read, so not applied yet: %s", self.key, after, err)
            return
        for split in splits:
            self._refetch(source, split, through)
        MarketSource.objects.filter(pk=source.pk).update(splits_through=through)
        source.splits_through = through

    def _refetch(self, source: MarketSource, split: Split, through: date) -> None:
        held = StoredBar.objects.filter(source=source, symbol=split.symbol)
        first = held.filter(day__lt=split.execution_date).aggregate(first=Min("day"))["first"]
        if first is None:
            return  # nothing stored before the split: no level to correct
        logger.info(
            "store %s: %s split %g on %s, its history is fetched again",
            self.key,
            split.symbol,
            split.ratio,
            split.execution_date,
        )
        got, failed = self.remote.fetch_ranges([split.symbol], first, through)
        if failed:
            raise DataProviderError(f"{split.symbol} split on {split.execution_date}: {failed[split.symbol]}")
        calendar = self.calendar(through)
        with transaction.atomic():
            held.delete()
            SymbolCoverage.objects.filter(source=source, symbol=split.symbol).delete()
            bar_rows.write(source.pk, got.items())
            known_to = _last_closed(calendar, first, through, self.clock())
            if known_to is not None:
                self._cover(source, [split.symbol], first, known_to, {})


@contextlib.contextmanager
def lock(name: str, seconds: int) -> Iterator[bool]:
    """The cache's lock ``name``; without the cache's Redis everyone holds it (the store's
    unique key then keeps a doubled fetch from doubling bars)."""
    held = redis_cache.lock(name, seconds)
    try:
        acquired = held.__enter__()
    except redis_cache.CacheUnavailable:
        yield True
        return
    try:
        yield acquired
    finally:
        with contextlib.suppress(redis_cache.CacheUnavailable):
            held.__exit__(None, None, None)


@contextlib.contextmanager
def _day_locks(key: str, days: Sequence[date]) -> Iterator[list[date]]:
    """Locks of as many of ``days`` as are free; yields those taken."""
    with contextlib.ExitStack() as stack:
        yield [d for d in days if stack.enter_context(lock(f"store:{key}:day:{d.isoformat()}", DAY_LOCK_SECONDS))]


def _bridged(lo: date, hi: date, had: SymbolCoverage | None, calendar: np.ndarray) -> tuple[date, date]:
    """Widen [lo, hi] so that, with what the symbol already covers, its coverage stays one range."""
    if had is None:
        return lo, hi
    cal = calendar
    if lo > had.known_to:
        i = int(np.searchsorted(cal, np.datetime64(had.known_to, "D"), side="right"))
        lo = min(lo, cal[i].astype(object)) if i < cal.size else lo
    if hi < had.known_from:
        i = int(np.searchsorted(cal, np.datetime64(had.known_from, "D"), side="left")) - 1
        hi = max(hi, cal[i].astype(object)) if i >= 0 else hi
    return lo, hi


def _last_closed(calendar: np.ndarray, lo: date, hi: date, now: datetime) -> date | None:
    """The last market day in [lo, hi] whose session has closed (None: none has)."""
    i = int(np.searchsorted(calendar, np.datetime64(hi, "D"), side="right")) - 1
    while i >= 0 and calendar[i].astype(object) >= lo:
        day = calendar[i].astype(object)
        if session_closed(day, now):
            return day
        i -= 1
    return None


class StoredProvider:
    """A remote provider as scans see it: windows from the store, the universe from the remote."""

    synthetic = False

    def __init__(self, remote: Remote, key: str) -> None:
        self.remote = remote
        self.store = MarketStore(key, remote)
        self.name = remote.name

    def instruments(self) -> list[Instrument]:
        return self.remote.instruments()

    def calendar(self) -> np.ndarray:
        return self.store.calendar()

    def date_range(self, wanted: date | None = None) -> tuple[date, date]:
        """First and last market day; ``wanted`` past the last one reads the calendar again."""
        return calendar_range(self.store.calendar(wanted))

    def bars(self, symbols: Sequence[str], as_of: date, lookback: int) -> dict[str, Bars]:
        return self.bars_and_failures(symbols, as_of, lookback)[0]

    def bars_and_failures(
        self, symbols: Sequence[str], as_of: date, lookback: int
    ) -> tuple[dict[str, Bars], dict[str, str]]:
        return self.store.window(symbols, as_of, lookback)
