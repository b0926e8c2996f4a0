"""Running one scan in this process through the four stages, reporting to a tracker.

This is the in-process path used by ``manage.py scan``; it needs no database or broker. The steps
it shares with the workers' stage tasks are in ``scanner.steps``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from engine import ENGINE_VERSION
from engine.alpha import TrainedAlpha, no_model_metrics
from engine.config import ScanConfig
from engine.scan import Skip, rank_rows, scan_batch
from engine.screens.screen import cross_section
from market.providers import MarketDataProvider
from progress.tracker import ProgressTracker
from scanner.steps import (
    fetch_bars,
    load_universe,
    outcome_metrics,
    scan_benchmark,
    screen_metrics,
    with_fetch_errors,
)


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


def run_scan(
    config: ScanConfig,
    provider: MarketDataProvider,
    tracker: ProgressTracker,
    on_update: Callable[[ProgressTracker], None] | None = None,
    alpha: TrainedAlpha | None = None,
    benchmark_symbol: str = "",
) -> ScanReport:
    """Run every stage here; ``on_update`` is called after each tracker change.

    ``benchmark_symbol`` (TECHNIC_BENCHMARK) is the rs_* fields' benchmark where the source
    has it; otherwise they measure against the equal-weighted universe.

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

    screen = config.screen
    benchmark = None
    if screen is not None and screen.needs_benchmark:
        benchmark = scan_benchmark(benchmark_symbol, provider, as_of, config.lookback_days, lambda: bars)
    batch = scan_batch(
        instruments,
        bars,
        config,
        as_of,
        provider.calendar(),
        on_progress=scanned,
        alpha=alpha.fit if alpha else None,
        benchmark=benchmark,
    )
    tracker.complete_stage("symbol_scanning")
    notify()

    tracker.start_stage("finalization", 1, "Ranking results")
    notify()
    rows, rejected = cross_section(screen, batch.rows, batch.strengths) if screen else (batch.rows, [])
    rows = rank_rows(rows, alpha.blend if alpha else None, screen)
    skipped = [*batch.skipped, *(Skip(r.symbol, "not_matched", r.detail) for r in rejected)]
    skipped = sorted(with_fetch_errors(skipped, failures), key=lambda s: s.symbol)
    tracker.complete_stage("finalization", f"{len(rows)} results, {len(skipped)} skipped")
    tracker.finish("completed")
    notify()
    seconds = time.perf_counter() - t0
    by_reason: dict[str, int] = {}
    for skip in skipped:
        by_reason[skip.reason] = by_reason.get(skip.reason, 0) + 1
    metrics: dict[str, Any] = {
        "engine_version": ENGINE_VERSION,
        **outcome_metrics(total, len(rows), by_reason, seconds if seconds > 0 else None),
        "stage_seconds": {name: stage["seconds"] for name, stage in tracker.snapshot()["stages"].items()},
        "alpha": alpha.metrics() if alpha else no_model_metrics(as_of),
        "screen": screen_metrics(config, benchmark.label if benchmark else None),
    }
    return ScanReport(config, as_of, provider.name, provider.synthetic, "completed", rows, skipped, metrics)
