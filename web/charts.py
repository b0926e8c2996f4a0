"""The series of a symbol's chart, computed from its bars with the engine's own indicators.

Pure: no Django, no I/O. The indicators run over every bar the scan used, so the chart's last
values are the row's own (same windows, same seeds); only the last ``CHART_BARS`` are returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

from engine import indicators
from engine.types import Bars

CHART_BARS = 250
PLAN_FIELDS = ("entry", "stop", "target")
SERIES_FIELDS = (
    "open", "high", "low", "close", "volume", "sma_20", "sma_50", "sma_200",
    "bb_upper", "bb_middle", "bb_lower", "rsi_14", "macd", "macd_signal", "macd_hist",
)  # fmt: skip


class ChartSeries(TypedDict):
    """What ``GET /scan/chart/{scan_id}/{symbol}`` answers. Series are aligned with ``dates``;
    a value outside its indicator's warm-up is null, never 0."""

    symbol: str
    dates: list[str]
    open: list[float | None]
    high: list[float | None]
    low: list[float | None]
    close: list[float | None]
    volume: list[float | None]
    sma_20: list[float | None]
    sma_50: list[float | None]
    sma_200: list[float | None]
    bb_upper: list[float | None]
    bb_middle: list[float | None]
    bb_lower: list[float | None]
    rsi_14: list[float | None]
    macd: list[float | None]
    macd_signal: list[float | None]
    macd_hist: list[float | None]
    plan: dict[str, float | None]


def chart_series(symbol: str, bars: Bars, row: Mapping[str, Any], last: int = CHART_BARS) -> ChartSeries:
    """The last ``last`` bars of ``bars`` with SMA 20/50/200, Bollinger 20/2, RSI 14 and MACD 12/26/9
    computed over all of ``bars``, and the trade plan (``entry``, ``stop``, ``target``) of ``row``."""
    close = bars.close[None, :]
    upper, middle, lower = indicators.bollinger(close)
    line, signal, hist = indicators.macd(close)
    keep = slice(max(0, len(bars) - last), len(bars))

    def tail(values: np.ndarray) -> list[float | None]:
        return [float(v) if math.isfinite(v) else None for v in np.asarray(values).reshape(-1)[keep]]

    return {
        "symbol": symbol,
        "dates": [str(d) for d in bars.dates[keep]],
        "open": tail(bars.open),
        "high": tail(bars.high),
        "low": tail(bars.low),
        "close": tail(bars.close),
        "volume": tail(bars.volume),
        "sma_20": tail(indicators.sma(close, 20)),
        "sma_50": tail(indicators.sma(close, 50)),
        "sma_200": tail(indicators.sma(close, 200)),
        "bb_upper": tail(upper),
        "bb_middle": tail(middle),
        "bb_lower": tail(lower),
        "rsi_14": tail(indicators.rsi(close)),
        "macd": tail(line),
        "macd_signal": tail(signal),
        "macd_hist": tail(hist),
        "plan": {name: row.get(name) for name in PLAN_FIELDS},
    }
