"""Indicators on real S&P 500 bars: TA-Lib agreement, last-bar gathering, history and look-ahead."""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from collections.abc import Callable
from datetime import date

import numpy as np
import pytest
import talib

from engine.indicators import (
    MIN_HISTORY,
    IndicatorSet,
    adx,
    atr,
    bollinger,
    compute_indicators,
    ema,
    macd,
    obv,
    rsi,
    sma,
)
from engine.panel import Panel, build_panel
from engine.types import Bars

# Late listings and spin-offs (shorter rows) and symbols with internal gaps, next to full histories.
SHORT_OR_GAPPED = ("GOOG", "DXC", "APTV", "BHF", "BHGE", "DWDP", "DHR", "O")
ALL_HISTORY = 10**6
CUTS = (
    (None, ALL_HISTORY),
    (date(2017, 9, 13), 400),
    (date(2016, 6, 30), ALL_HISTORY),
    (date(2014, 6, 2), 300),
    (date(2018, 1, 2), 60),
)
RTOL, ATOL = 1e-9, 1e-9

# Series functions as (ours on a panel, TA-Lib on one symbol's bars); multi-output ones by index.
SERIES: dict[str, tuple[Callable[[Panel], np.ndarray], Callable[[Bars], np.ndarray]]] = {
    "SMA(20)": (lambda p: sma(p.close, 20), lambda b: talib.SMA(b.close, 20)),
    "SMA(200)": (lambda p: sma(p.close, 200), lambda b: talib.SMA(b.close, 200)),
    "EMA(12)": (lambda p: ema(p.close, 12), lambda b: talib.EMA(b.close, 12)),
    "EMA(26)": (lambda p: ema(p.close, 26), lambda b: talib.EMA(b.close, 26)),
    "RSI(14)": (lambda p: rsi(p.close, 14), lambda b: talib.RSI(b.close, 14)),
    "ATR(14)": (lambda p: atr(p.high, p.low, p.close, 14), lambda b: talib.ATR(b.high, b.low, b.close, 14)),
    "MACD": (lambda p: macd(p.close)[0], lambda b: talib.MACD(b.close, 12, 26, 9)[0]),
    "MACD signal": (lambda p: macd(p.close)[1], lambda b: talib.MACD(b.close, 12, 26, 9)[1]),
    "MACD hist": (lambda p: macd(p.close)[2], lambda b: talib.MACD(b.close, 12, 26, 9)[2]),
    "BB upper": (lambda p: bollinger(p.close)[0], lambda b: talib.BBANDS(b.close, 20, 2.0, 2.0, talib.MA_Type.SMA)[0]),
    "BB middle": (lambda p: bollinger(p.close)[1], lambda b: talib.BBANDS(b.close, 20, 2.0, 2.0, talib.MA_Type.SMA)[1]),
    "BB lower": (lambda p: bollinger(p.close)[2], lambda b: talib.BBANDS(b.close, 20, 2.0, 2.0, talib.MA_Type.SMA)[2]),
    "ADX(14)": (lambda p: adx(p.high, p.low, p.close)[0], lambda b: talib.ADX(b.high, b.low, b.close, 14)),
    "PLUS_DI(14)": (lambda p: adx(p.high, p.low, p.close)[1], lambda b: talib.PLUS_DI(b.high, b.low, b.close, 14)),
    "MINUS_DI(14)": (lambda p: adx(p.high, p.low, p.close)[2], lambda b: talib.MINUS_DI(b.high, b.low, b.close, 14)),
    "OBV": (lambda p: obv(p.close, p.volume), lambda b: talib.OBV(b.close, b.volume)),
}

# Bars a row needs before each IndicatorSet field is defined.
REQUIRED_BARS = {
    "close": 1, "sma_20": 20, "sma_50": 50, "sma_200": 200, "ema_12": 12, "ema_26": 26,
    "macd": 34, "macd_signal": 34, "macd_hist": 34, "rsi_14": 15, "atr_14": 15,
    "bb_upper": 20, "bb_middle": 20, "bb_lower": 20, "adx_14": 28, "plus_di_14": 15, "minus_di_14": 15,
    "obv": 1, "ret_1d": 2, "ret_5d": 6, "ret_21d": 22, "vol_20d": 21, "avg_volume_20": 20,
    "dollar_volume_20": 20, "high_52w": 1, "low_52w": 1, "pct_from_52w_high": 1, "pct_from_52w_low": 1,
    "sma_50_slope": 60, "sma_200_slope": 220, "macd_hist_prev": 39, "volume_ratio": 20, "obv_trend": 21,
    "bb_pct_b": 20, "bb_width": 20, "atr_pct": 15,
}  # fmt: skip

FIELDS = [f.name for f in dataclasses.fields(IndicatorSet)]


@pytest.fixture(scope="module")
def talib_symbols(real_bars: dict[str, Bars]) -> list[str]:
    """Every eighth symbol (64 of 505) plus the short and gapped ones."""
    return sorted(real_bars)[::8] + [s for s in SHORT_OR_GAPPED if s not in sorted(real_bars)[::8]]


def windows(real_bars: dict[str, Bars], symbols: list[str], as_of: date | None, lookback: int) -> list[Bars]:
    """Each symbol's window ending at ``as_of``, leaving out symbols with no bar by then."""
    return [w for w in (real_bars[s].window(as_of, lookback) for s in symbols) if len(w)]


def assert_same_fields(a: IndicatorSet, i: int, b: IndicatorSet, j: int, rtol: float = 0.0) -> None:
    for name in FIELDS:
        np.testing.assert_allclose(getattr(a, name)[i], getattr(b, name)[j], rtol=rtol, atol=0, err_msg=name)


@pytest.mark.parametrize(("as_of", "lookback"), CUTS, ids=[f"{d}-{n}" for d, n in CUTS])
def test_series_functions_agree_with_talib_on_a_panel_of_mixed_lengths(
    real_bars: dict[str, Bars], talib_symbols: list[str], as_of: date | None, lookback: int
) -> None:
    bars = windows(real_bars, talib_symbols, as_of, lookback)
    panel = build_panel(bars)
    assert len(bars) >= 60 and len(set(panel.lengths.tolist())) > 1
    for name, (ours, theirs) in SERIES.items():
        values = ours(panel)
        assert values.shape == panel.close.shape and values.dtype == np.float64
        for row, b in enumerate(bars):
            n = len(b)
            np.testing.assert_allclose(values[row, :n], theirs(b), rtol=RTOL, atol=ATOL, err_msg=f"{name} row {row}")
            assert np.isnan(values[row, n:]).all(), f"{name} has values past the end of row {row}"


def test_last_bar_values_equal_the_series_at_each_rows_last_bar(
    real_bars: dict[str, Bars], talib_symbols: list[str]
) -> None:
    panel = build_panel(windows(real_bars, talib_symbols, date(2017, 9, 13), 700))
    ind = compute_indicators(panel)
    c, h, lo = panel.close, panel.high, panel.low
    upper, middle, lower = bollinger(c)
    line, signal, hist = macd(c)
    adx_14, plus_di, minus_di = adx(h, lo, c)
    series = {
        "close": c, "sma_20": sma(c, 20), "sma_50": sma(c, 50), "sma_200": sma(c, 200),
        "ema_12": ema(c, 12), "ema_26": ema(c, 26), "macd": line, "macd_signal": signal, "macd_hist": hist,
        "rsi_14": rsi(c), "atr_14": atr(h, lo, c), "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
        "adx_14": adx_14, "plus_di_14": plus_di, "minus_di_14": minus_di, "obv": obv(c, panel.volume),
    }  # fmt: skip
    for name, values in series.items():
        # SMAs and bands come from each row's last bars rather than a running sum: equal to rounding.
        np.testing.assert_allclose(getattr(ind, name), panel.last(values), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(ind.macd_hist_prev, panel.last(hist, 5))
    sma_50, sma_200 = sma(c, 50), sma(c, 200)
    np.testing.assert_allclose(ind.sma_50_slope, panel.last(sma_50) / panel.last(sma_50, 10) - 1, rtol=1e-9)
    np.testing.assert_allclose(ind.sma_200_slope, panel.last(sma_200) / panel.last(sma_200, 20) - 1, rtol=1e-9)


@pytest.mark.parametrize("symbol", ["AAPL", "XOM", "GOOG", "DXC"])
def test_derived_values_follow_their_documented_definitions(real_bars: dict[str, Bars], symbol: str) -> None:
    b = real_bars[symbol].window(date(2018, 1, 31), 400)
    ind = compute_indicators(build_panel([b]))
    close, high, low, volume = b.close, b.high, b.low, b.volume
    upper, middle, lower = (band[-1] for band in talib.BBANDS(close, 20, 2.0, 2.0, talib.MA_Type.SMA))
    sma_50, sma_200 = talib.SMA(close, 50), talib.SMA(close, 200)
    up_down = np.sign(np.diff(close[-21:]))
    expected = {
        "ret_1d": close[-1] / close[-2] - 1,
        "ret_5d": close[-1] / close[-6] - 1,
        "ret_21d": close[-1] / close[-22] - 1,
        "vol_20d": statistics.stdev(math.log(close[i] / close[i - 1]) for i in range(-20, 0)) * math.sqrt(252),
        "avg_volume_20": sum(volume[-20:]) / 20,
        "dollar_volume_20": sum(c * v for c, v in zip(close[-20:], volume[-20:], strict=True)) / 20,
        "high_52w": max(high[-252:]),
        "low_52w": min(low[-252:]),
        "pct_from_52w_high": close[-1] / max(high[-252:]) - 1,
        "pct_from_52w_low": close[-1] / min(low[-252:]) - 1,
        "sma_50_slope": sma_50[-1] / sma_50[-11] - 1,
        "sma_200_slope": sma_200[-1] / sma_200[-21] - 1,
        "macd_hist_prev": talib.MACD(close, 12, 26, 9)[2][-6],
        "volume_ratio": volume[-1] / (sum(volume[-20:]) / 20),
        "obv_trend": float(np.sum(up_down * volume[-20:])) / sum(volume[-20:]),
        "bb_pct_b": (close[-1] - lower) / (upper - lower),
        "bb_width": (upper - lower) / middle,
        "atr_pct": talib.ATR(high, low, close, 14)[-1] / close[-1],
    }
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(ind, name)[0], value, rtol=1e-9, err_msg=name)
    assert ind.pct_from_52w_high[0] <= 0 <= ind.pct_from_52w_low[0]
    assert -1 <= ind.obv_trend[0] <= 1


def test_52_week_range_uses_all_bars_of_a_row_shorter_than_a_year(real_bars: dict[str, Bars]) -> None:
    dxc = real_bars["DXC"]
    assert len(dxc) < 252
    ind = compute_indicators(build_panel([dxc, real_bars["AAPL"]]))
    assert ind.high_52w[0] == dxc.high.max() and ind.low_52w[0] == dxc.low.min()


def test_each_row_of_a_mixed_length_panel_gets_exactly_what_it_gets_alone(real_bars: dict[str, Bars]) -> None:
    bars = [real_bars[s] for s in ("AAPL", "GOOG", "APTV", "DXC", "MSFT", "BHF", "DWDP", "DHR", "NFLX")]
    together = compute_indicators(build_panel(bars))
    for row, b in enumerate(bars):
        assert_same_fields(together, row, compute_indicators(build_panel([b])), 0)


def test_values_needing_more_history_than_a_row_has_are_nan_never_zero(real_bars: dict[str, Bars]) -> None:
    assert set(REQUIRED_BARS) == set(FIELDS)
    assert max(REQUIRED_BARS.values()) <= MIN_HISTORY
    lengths = sorted({1, MIN_HISTORY} | {n - 1 for n in REQUIRED_BARS.values() if n > 1} | set(REQUIRED_BARS.values()))
    aapl = real_bars["AAPL"]
    ind = compute_indicators(build_panel([aapl.window(None, n) for n in lengths]))
    for name, needed in REQUIRED_BARS.items():
        values = getattr(ind, name)
        for row, n in enumerate(lengths):
            if n < needed:
                assert np.isnan(values[row]), f"{name} with {n} bars should be NaN, got {values[row]}"
            else:
                assert np.isfinite(values[row]), f"{name} with {n} bars should be defined"


def test_a_panel_of_only_very_short_rows_gives_nan_without_warnings(real_bars: dict[str, Bars]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ind = compute_indicators(build_panel([real_bars["AAPL"].window(None, 3), real_bars["MSFT"].window(None, 1)]))
    for name, needed in REQUIRED_BARS.items():
        np.testing.assert_array_equal(np.isnan(getattr(ind, name)), [needed > 3, needed > 1], err_msg=name)


def test_series_values_at_a_bar_do_not_change_when_later_bars_change(real_bars: dict[str, Bars]) -> None:
    bars = [real_bars[s] for s in sorted(real_bars)[::25]]
    panel = build_panel(bars)
    cut = 700
    rng = np.random.default_rng(7)
    later = np.arange(panel.close.shape[1]) > cut
    garbled = {
        name: np.where(later, rng.uniform(1, 500, panel.close.shape), getattr(panel, name))
        for name in ("open", "high", "low", "close", "volume")
    }
    other = Panel(dates=panel.dates, lengths=panel.lengths, **garbled)
    for name, (ours, _) in SERIES.items():
        np.testing.assert_array_equal(ours(panel)[:, : cut + 1], ours(other)[:, : cut + 1], err_msg=name)


@pytest.mark.parametrize("as_of", [date(2014, 3, 3), date(2016, 11, 8), date(2017, 12, 29)])
def test_indicators_as_of_a_date_ignore_bars_after_it(real_bars: dict[str, Bars], as_of: date) -> None:
    symbols = [*sorted(real_bars)[::20], "GOOG", "DXC"]
    cut = windows(real_bars, symbols, as_of, ALL_HISTORY)
    expected = compute_indicators(build_panel(cut))
    # The same rows with their later bars still present in the arrays, past each row's length.
    full = build_panel([real_bars[s] for s in symbols if len(real_bars[s].window(as_of, ALL_HISTORY))])
    lengths = np.array([len(w) for w in cut], dtype=np.int64)
    assert (lengths < full.lengths).all()
    with_later_bars = dataclasses.replace(full, lengths=lengths)
    actual = compute_indicators(with_later_bars)
    for row in range(len(cut)):
        assert_same_fields(actual, row, expected, row)
