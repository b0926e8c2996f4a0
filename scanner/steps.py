"""The steps a scan's stages share, whether the scan runs in this process (``scanner.runner``)
or on the workers (``scanner.tasks``): resolving the date, selecting the universe, fetching bars
in chunks, explaining failed fetches, and the figures every finished scan reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from engine.config import ScanConfig
from engine.scan import SKIP_REASONS, Skip
from engine.types import Bars, Instrument
from engine.universe import select_universe
from market.providers import MarketDataProvider
from market.providers.base import bars_and_failures
from market.sources import FETCH_CHUNK, resolve_as_of


def load_universe(
    provider: MarketDataProvider, config: ScanConfig, instruments: Sequence[Instrument] | None = None
) -> tuple[list[Instrument], date]:
    """universe_loading: the instruments to scan (of ``instruments``, by default the
    provider's) and the resolved as_of date."""
    as_of = resolve_as_of(provider, config.as_of)
    return select_universe(provider.instruments() if instruments is None else instruments, config), as_of


def fetch_bars(
    provider: MarketDataProvider,
    symbols: Sequence[str],
    as_of: date,
    lookback: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Bars], dict[str, str]]:
    """data_fetching: windowed bars for ``symbols``, in chunks so progress is real, and
    ``{symbol: error}`` for those whose fetch failed (remote providers report it)."""
    bars: dict[str, Bars] = {}
    failures: dict[str, str] = {}
    for start in range(0, len(symbols), FETCH_CHUNK):
        fetched, failed = bars_and_failures(provider, symbols[start : start + FETCH_CHUNK], as_of, lookback)
        bars.update(fetched)
        failures.update(failed)
        if on_progress is not None:
            on_progress(min(start + FETCH_CHUNK, len(symbols)))
    return bars, failures


def with_fetch_errors(skipped: Sequence[Skip], failures: Mapping[str, str]) -> list[Skip]:
    """A ``no_data`` skip of a symbol whose fetch failed says why (the engine only knows the
    bars are missing)."""
    return [
        Skip(s.symbol, s.reason, f"fetching its bars failed: {failures[s.symbol]}")
        if s.reason == "no_data" and s.symbol in failures
        else s
        for s in skipped
    ]


def outcome_metrics(
    requested: int, results: int, skipped_by_reason: Mapping[str, int], elapsed: float | None
) -> dict[str, Any]:
    """The counts and throughput of a scan, defined once for both paths: ``symbols_per_second``
    is the requested symbols over the scan's elapsed seconds (None before it has any)."""
    return {
        "requested_symbols": requested,
        "results": results,
        "skipped": sum(skipped_by_reason.values()),
        "skipped_by_reason": {r: skipped_by_reason[r] for r in SKIP_REASONS if skipped_by_reason.get(r)},
        "elapsed_seconds": round(elapsed, 3) if elapsed is not None else None,
        "symbols_per_second": round(requested / elapsed, 1) if elapsed else None,
    }
