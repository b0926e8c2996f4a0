"""What the pages read: the scan form's choices, a symbol's chart, a scan's predecessor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from engine.config import ScanConfig
from market import cache
from market.sources import DataSource, instruments_for, provider_for
from scanner.lifecycle import config_of, source_of
from scanner.models import Scan
from scanner.selectors import finished_scans
from web.charts import ChartSeries, chart_series


@dataclass(frozen=True)
class FormChoices:
    """What the scan form offers: the universe's sectors, the data's dates and the defaults."""

    provider: str
    synthetic: bool
    sectors: list[str]
    first_date: date
    last_date: date
    defaults: ScanConfig


def form_choices(source: DataSource | None = None) -> FormChoices:
    """The configured source's sectors and date range. Raises DataProviderError if it cannot be read."""
    source = source or DataSource.from_settings()
    provider = provider_for(source)
    first, last = provider.date_range()
    sectors = sorted({i.sector for i in instruments_for(source)})
    return FormChoices(source.provider, provider.synthetic, sectors, first, last, ScanConfig())


def symbol_chart(scan: Scan, symbol: str) -> ChartSeries | None:
    """The chart of ``symbol`` as ``scan`` saw it (the bars it used, up to its as_of), or None if
    the scan has no result row for it. The bars are read through the price cache. Raises
    DataProviderError if the bars cannot be read."""
    result = scan.results.filter(symbol=symbol).first()
    if result is None or scan.as_of is None:
        return None
    lookback, source = config_of(scan).lookback_days, source_of(scan)
    bars = cache.read_bars(source.cache_namespace(), scan.as_of, lookback, [symbol])[0].get(symbol)
    if bars is None:  # not cached (or the cache is down): ask the provider
        bars = provider_for(source).bars([symbol], scan.as_of, lookback).get(symbol)
    if bars is None:
        return None
    return chart_series(symbol, bars, result.row)


def previous_scan(scan: Scan) -> Scan | None:
    """The owner's finished scan created just before ``scan``, if any."""
    earlier = finished_scans(scan.owner).filter(created_at__lt=scan.created_at)
    return earlier.first()
