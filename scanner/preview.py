"""What a screen matches now: one scan run in this process, nothing recorded.

The screen editor asks this while a screen is being written, so it answers counts and the first
few ranked rows rather than a scan: no database row, no workflow, no progress in Redis. It ranks
as a recorded scan would, with the alpha model that scan would choose.
"""

from __future__ import annotations

from typing import Any, TypedDict

from django.conf import settings

from alpha.services import alpha_select, trained_alpha
from engine.config import ScanConfig
from market.sources import DataSource, provider_for, resolve_as_of
from progress.tracker import ProgressTracker
from scanner.runner import run_scan

PREVIEW_ROWS = 10
ROW_FIELDS = ("symbol", "name", "sector", "tech_rating", "screen")


class ScreenPreview(TypedDict):
    as_of: str
    universe: int
    matched: int
    skipped_by_reason: dict[str, int]
    top: list[dict[str, Any]]


def screen_preview(config: ScanConfig, benchmark_symbol: str | None = None) -> ScreenPreview:
    """Run ``config`` over the configured data source now and summarise it: ``as_of`` (ISO
    date), ``universe`` (the symbols scanned), ``matched`` (the result rows), the skips by
    reason (``not_matched`` for those the filter rejected) and the ``top`` rows, ranked, with
    ``symbol``, ``name``, ``sector``, ``tech_rating`` and ``screen`` (values and rank).

    ``benchmark_symbol`` is the rs_* fields' benchmark (default: TECHNIC_BENCHMARK). Reads the
    alpha models; writes nothing. Raises ConfigError (unknown sector or symbol, as_of outside
    the data) and DataProviderError (the data cannot be read)."""
    source = DataSource.from_settings()
    provider = provider_for(source)
    model = alpha_select(source, resolve_as_of(provider, config.as_of))
    report = run_scan(
        config,
        provider,
        ProgressTracker("preview"),
        alpha=trained_alpha(model) if model is not None else None,
        benchmark_symbol=settings.TECHNIC_BENCHMARK if benchmark_symbol is None else benchmark_symbol,
    )
    return {
        "as_of": report.as_of.isoformat(),
        "universe": int(report.metrics["requested_symbols"]),
        "matched": len(report.rows),
        "skipped_by_reason": dict(report.metrics["skipped_by_reason"]),
        "top": [{name: row[name] for name in ROW_FIELDS} for row in report.rows[:PREVIEW_ROWS]],
    }
