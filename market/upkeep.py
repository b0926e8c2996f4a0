"""Keeping the market data store current: top-ups, backfills, and what it holds (coverage)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from django.db.models import Count, Max, Min

from market.models import MarketSource, StoredBar
from market.providers.base import ProviderUnavailable
from market.store import RANGE_BATCH, StoredProvider

_EPOCH = date(1970, 1, 1)


@dataclass
class Report:
    """What an update or a backfill did; ``stopped`` says why it ended before the last symbol
    (what it stored stays stored: run it again to go on)."""

    source: str
    symbols: int
    through: str
    done: int = 0
    bars_written: int = 0
    requests: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    stopped: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "symbols": self.symbols,
            "done": self.done,
            "through": self.through,
            "bars_written": self.bars_written,
            "requests": self.requests,
            "failed": len(self.failed),
            "failures": dict(list(self.failed.items())[:20]),
            "stopped": self.stopped or None,
            "seconds": round(self.seconds, 3),
        }


def update(
    provider: StoredProvider,
    symbols: Sequence[str],
    lookback: int,
    chunk: int = RANGE_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Top the store up to the latest market day for ``symbols`` (their ``lookback``-day
    windows), chunk by chunk; ``on_progress(done, total)`` after each chunk."""
    return _fill(provider, symbols, None, lookback, chunk, on_progress)


def backfill(
    provider: StoredProvider,
    symbols: Sequence[str],
    since: date,
    chunk: int = RANGE_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Fill the store from ``since`` to the latest market day for ``symbols``, ``chunk``
    symbols at a time (a chunk's bars are written and dropped before the next: it streams)."""
    return _fill(provider, symbols, since, None, chunk, on_progress)


def _fill(
    provider: StoredProvider,
    symbols: Sequence[str],
    since: date | None,
    lookback: int | None,
    chunk: int,
    on_progress: Callable[[int, int], None] | None,
) -> Report:
    started = time.perf_counter()
    store = provider.store
    calendar = store.calendar()
    last = calendar[-1].astype(object)
    days = calendar[calendar >= np.datetime64(since, "D")] if since else calendar[-int(lookback or 1) :]
    wanted = list(dict.fromkeys(symbols))
    report = Report(store.key, len(wanted), last.isoformat())
    if days.size == 0:
        return report
    source = store.source()
    before = StoredBar.objects.filter(source=source).count()
    try:
        store._apply_splits(source, last)
        for at in range(0, len(wanted), chunk):
            report.failed.update(store.fill(source, wanted[at : at + chunk], days))
            report.done = min(at + chunk, len(wanted))
            if on_progress is not None:
                on_progress(report.done, len(wanted))
    except ProviderUnavailable as err:  # budget spent, breaker open: what was stored stays
        report.stopped = str(err)
    report.bars_written = StoredBar.objects.filter(source=source).count() - before
    report.seconds = time.perf_counter() - started
    return report


def summary(key: str) -> dict[str, Any]:
    """One source's symbols, bars, first and last stored day and the calendar's last day, in
    one aggregate query (``coverage`` also counts the days missing, reading every symbol's span)."""
    source = MarketSource.objects.filter(key=key).first()
    if source is None:
        return {"source": key, "symbols": 0, "bars": 0, "first_day": None, "last_day": None, "calendar_last_day": None}
    figures = StoredBar.objects.filter(source=source).aggregate(
        symbols=Count("symbol", distinct=True), bars=Count("id"), first=Min("day"), last=Max("day")
    )
    calendar = source.calendar
    return {
        "source": key,
        "symbols": figures["symbols"],
        "bars": figures["bars"],
        "first_day": figures["first"].isoformat() if figures["first"] else None,
        "last_day": figures["last"].isoformat() if figures["last"] else None,
        "calendar_last_day": (_EPOCH + timedelta(days=calendar[-1])).isoformat() if calendar else None,
        "calendar_read_at": source.calendar_read_at.isoformat() if source.calendar_read_at else None,
    }


def coverage() -> list[dict[str, Any]]:
    """Per stored source: symbols, bars, first and last stored day, the calendar's last day,
    and the market days missing (calendar days within each symbol's stored span without a bar,
    summed over symbols). Reads the database only."""
    out = []
    for source in MarketSource.objects.order_by("key"):
        calendar = np.array(source.calendar, dtype=np.int64).astype("datetime64[D]")
        spans = (
            StoredBar.objects.filter(source=source)
            .values("symbol")
            .annotate(first=Min("day"), last=Max("day"), bars=Count("id"))
        )
        missing = bars = 0
        first: date | None = None
        last: date | None = None
        for span in spans:
            lo, hi = np.datetime64(span["first"], "D"), np.datetime64(span["last"], "D")
            expected = int(np.searchsorted(calendar, hi, side="right") - np.searchsorted(calendar, lo, side="left"))
            missing += max(0, expected - span["bars"])
            bars += span["bars"]
            first = span["first"] if first is None else min(first, span["first"])
            last = span["last"] if last is None else max(last, span["last"])
        out.append(
            {
                "source": source.key,
                "symbols": len(spans),
                "bars": bars,
                "first_day": first.isoformat() if first else None,
                "last_day": last.isoformat() if last else None,
                "days_missing": missing,
                "calendar_last_day": calendar[-1].astype(object).isoformat() if calendar.size else None,
                "calendar_read_at": source.calendar_read_at.isoformat() if source.calendar_read_at else None,
                "splits_through": source.splits_through.isoformat() if source.splits_through else None,
            }
        )
    return out
