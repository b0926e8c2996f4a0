"""A symbol's chart series: the engine's indicators over the bars the scan used, so the chart ends
on the row's own values; warm-ups are null, never 0."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.config import ScanConfig
from engine.scan import scan_batch
from engine.types import Bars
from market.providers import DemoProvider
from web.charts import CHART_BARS, SERIES_FIELDS, chart_series

ROW_VALUES = ("sma_20", "sma_50", "sma_200", "bb_upper", "bb_middle", "bb_lower", "rsi_14", "macd", "macd_signal")


@pytest.fixture(scope="module")
def scanned() -> tuple[Bars, dict[str, Any]]:
    """A demo symbol's bars as a default scan reads them, and the row the engine made of them."""
    provider = DemoProvider(n_symbols=22)
    as_of = provider.date_range()[1]
    config = ScanConfig(min_price=0, min_dollar_volume=0)
    instruments = provider.instruments()
    bars = provider.bars([i.symbol for i in instruments], as_of, config.lookback_days)
    out = scan_batch(instruments, bars, config, as_of, provider.calendar())
    row = out.rows[0]
    return bars[row["symbol"]], row


def test_the_chart_ends_on_the_rows_indicator_values_and_trade_plan(scanned: tuple[Bars, dict[str, Any]]) -> None:
    bars, row = scanned
    chart = chart_series(row["symbol"], bars, row)
    assert chart["dates"][-1] == row["as_of"]
    assert chart["close"][-1] == pytest.approx(row["close"])
    for name in ROW_VALUES:
        assert chart[name][-1] == pytest.approx(row[name], rel=1e-9), name  # type: ignore[literal-required]
    assert chart["plan"] == {"entry": row["entry"], "stop": row["stop"], "target": row["target"]}
    stop, entry, target = (chart["plan"][k] for k in ("stop", "entry", "target"))
    assert stop is not None and entry is not None and target is not None and stop < entry < target


def test_only_the_last_bars_are_sent_every_series_aligned_with_the_dates(scanned: tuple[Bars, dict[str, Any]]) -> None:
    bars, row = scanned
    assert len(bars) > CHART_BARS
    chart = chart_series(row["symbol"], bars, row)
    assert len(chart["dates"]) == CHART_BARS
    assert chart["dates"] == sorted(chart["dates"])
    for name in SERIES_FIELDS:
        values = chart[name]  # type: ignore[literal-required]
        assert len(values) == CHART_BARS, name
        assert all(v is None or math.isfinite(v) for v in values)
    # Over the whole window the 200-day average is defined from the first bar shown.
    assert chart["sma_200"][0] is not None


def test_indicators_in_their_warm_up_are_null_not_zero(scanned: tuple[Bars, dict[str, Any]]) -> None:
    bars, row = scanned
    short = bars.window(None, 60)
    chart = chart_series(row["symbol"], short, row)
    assert len(chart["dates"]) == 60
    assert chart["sma_200"] == [None] * 60
    assert chart["sma_50"][:49] == [None] * 49 and chart["sma_50"][49] is not None
    assert chart["rsi_14"][:14] == [None] * 14 and chart["rsi_14"][14] is not None
    assert chart["macd"][:33] == [None] * 33 and chart["macd"][33] is not None
