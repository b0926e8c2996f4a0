"""Running one scan in this process through the four stages, reporting to a tracker.

This is the in-process path used by ``manage.py scan``; it needs no database or broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from progress.tracker import ProgressTracker
from scanner.engine import ENGINE_VERSION
from scanner.engine.alpha import TrainedAlpha, no_model_metrics
from scanner.engine.config import ConfigError, ScanConfig
from scanner.engine.scan import SKIP_REASONS, Skip, rank_rows, scan_batch
from scanner.engine.types import Bars, Instrument
from scanner.engine.universe import select_universe
from scanner.providers import MarketDataProvider
from scanner.providers.base import bars_and_failures

FETCH_CHUNK = 100


@dataclass
class ScanReport:
    config: ScanConfig
    as_of: date
    provider: str
    synthetic: bool
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    scan_id: str | None = None  # the database id of a scan that ran on the workers

    def as_dict(self) -> dict[str, Any]:
        """The ``--format json`` document: scan (id, config, status, metrics), results, skipped."""
        scan = {
            "id": self.scan_id,
            **self.config.as_dict(),
            "as_of": self.as_of.isoformat(),
            "status": self.status,
            "data_provider": self.provider,
            "synthetic": self.synthetic,
            "metrics": self.metrics,
        }
        return {"scan": scan, "results": self.rows, "skipped": [s.as_dict() for s in self.skipped]}


def resolve_as_of(provider: MarketDataProvider, requested: date | None) -> date:
    """The scan date: the provider's last market date by default; outside the data is an error."""
    first, last = provider.date_range()
    if requested is None:
        return last
    if not first <= requested <= last:
        raise ConfigError(
            "as_of",
            f"as_of {requested.isoformat()} is outside the data ({first.isoformat()} to {last.isoformat()})",
            [last.isoformat()],
        )
    return requested


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


def run_scan(
    config: ScanConfig,
    provider: MarketDataProvider,
    tracker: ProgressTracker,
    on_update: Callable[[ProgressTracker], None] | None = None,
    alpha: TrainedAlpha | None = None,
) -> ScanReport:
    """Run every stage here; ``on_update`` is called after each tracker change.

    ``alpha`` is the model the caller chose for this scan's data and as_of (its cut-off on or
    before as_of); without one the alpha fields stay empty and the ranking is by TechRating.

    Raises ConfigError for bad configuration (unknown sector or symbol, as_of outside the
    data) and DataProviderError when the data cannot be read.
    """

    def notify() -> None:
        if on_update is not None:
            on_update(tracker)

    t0 = time.perf_counter()
    tracker.start_stage("universe_loading", 1, "Loading the universe")
    notify()
    instruments, as_of = load_universe(provider, config)
    tracker.complete_stage("universe_loading", f"{len(instruments)} symbols as of {as_of.isoformat()}")
    notify()

    symbols = [i.symbol for i in instruments]
    total = len(symbols)
    tracker.start_stage("data_fetching", total, f"Fetching bars (0/{total})")
    notify()

    def fetched(done: int) -> None:
        tracker.advance("data_fetching", done, f"Fetching bars ({done}/{total})")
        notify()

    bars, failures = fetch_bars(provider, symbols, as_of, config.lookback_days, fetched)
    tracker.complete_stage("data_fetching")
    notify()

    tracker.start_stage("symbol_scanning", total, f"Scanning (0/{total})")
    notify()

    def scanned(done: int, symbol: str) -> None:
        tracker.advance("symbol_scanning", done, f"Scanning {symbol} ({done}/{total})")
        notify()

    batch = scan_batch(
        instruments, bars, config, as_of, provider.calendar(), on_progress=scanned, alpha=alpha.fit if alpha else None
    )
    tracker.complete_stage("symbol_scanning")
    notify()

    tracker.start_stage("finalization", 1, "Ranking results")
    notify()
    rows = rank_rows(batch.rows, alpha.blend if alpha else None)
    skipped = sorted(with_fetch_errors(batch.skipped, failures), key=lambda s: s.symbol)
    tracker.complete_stage("finalization", f"{len(rows)} results, {len(skipped)} skipped")
    tracker.finish("completed")
    notify()
    seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "engine_version": ENGINE_VERSION,
        "requested_symbols": total,
        "results": len(rows),
        "skipped": len(skipped),
        "skipped_by_reason": {r: n for r in SKIP_REASONS if (n := sum(1 for s in skipped if s.reason == r))},
        "stage_seconds": {name: stage["seconds"] for name, stage in tracker.snapshot()["stages"].items()},
        "elapsed_seconds": round(seconds, 3),
        "symbols_per_second": round(total / seconds, 1) if seconds > 0 else None,
        "alpha": alpha.metrics() if alpha else no_model_metrics(as_of),
    }
    return ScanReport(config, as_of, provider.name, provider.synthetic, "completed", rows, skipped, metrics)
