"""The steps a scan's stages share, whether the scan runs in this process (``scanner.runner``)
or on the workers (``scanner.tasks``): resolving the date, selecting the universe, fetching bars
in chunks, explaining failed fetches, and the figures every finished scan reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np

from engine.config import ScanConfig
from engine.scan import SKIP_REASONS, Skip
from engine.screens.series import Benchmark, equal_weight_index
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


def scan_benchmark(
    symbol: str,
    provider: MarketDataProvider,
    as_of: date,
    lookback: int,
    universe_bars: Callable[[], Mapping[str, Bars]],
) -> Benchmark:
    """The rs_* fields' benchmark: ``symbol``'s closes when it is set and the source has at
    least two of its bars, else the equal-weighted index of ``universe_bars()``. Its label says
    which (and why the symbol was not used)."""
    why = "TECHNIC_BENCHMARK is not set"
    if symbol:
        bars, _ = bars_and_failures(provider, [symbol], as_of, lookback)
        found = bars.get(symbol)
        if found is not None and len(found) >= 2:
            return Benchmark(found.dates, found.close, symbol)
        why = f"{symbol} has no bars in the source"
    closes = {s: (b.dates, b.close) for s, b in universe_bars().items()}
    return equal_weight_index(closes, f"equal-weighted universe of {len(closes)} symbols ({why})")


def benchmark_json(benchmark: Benchmark) -> dict[str, Any]:
    return {
        "label": benchmark.label,
        "dates": [str(d) for d in benchmark.dates],
        "levels": [float(v) for v in benchmark.levels],
    }


def benchmark_from_json(data: Mapping[str, Any]) -> Benchmark:
    return Benchmark(
        np.array(data["dates"], dtype="datetime64[D]"), np.array(data["levels"], dtype=float), data["label"]
    )


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


def screen_metrics(config: ScanConfig, benchmark: str | None) -> dict[str, Any] | None:
    """What the scan's metrics say of its screen: its text as it ran and the rs_* benchmark
    (None when no field used one); None without a screen."""
    screen = config.screen
    if screen is None:
        return None
    return {**screen.as_dict(), "benchmark": benchmark}
