"""The alpha model's features: per symbol and bar, computed only from that bar and the ones before.

Every feature reads a fixed window of at most ``FEATURE_WINDOW`` bars ending at the bar it
describes (sums over exactly that window, never a running sum over the whole history), so a
feature's value does not depend on where the history handed in starts: the value a scan
computes from its window of bars is the value training computed at the same bar. Returns and
percentages are fractions; values whose window a row does not have are NaN, never 0.

| feature | definition at bar t |
|---|---|
| ``ret_5d``, ``ret_21d`` | close[t] / close[t-k] - 1 (short-term reversal) |
| ``mom_12_1`` | close[t-21] / close[t-251] - 1 (twelve-month momentum without the last month) |
| ``vol_20d`` | sample std of the last 20 daily log returns x sqrt(252) |
| ``trend_50``, ``trend_200`` | close[t] / SMA_n[t] - 1 |
| ``volume_trend`` | ln(mean volume of the last 5 bars / mean volume of the last 60) |
| ``dollar_volume`` | ln(mean close x volume of the last 20 bars) (size and liquidity) |
| ``pct_from_52w_high`` / ``pct_from_52w_low`` | close / max(high) - 1 and close / min(low) - 1 over the last 252 bars |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.indicators import TRADING_DAYS_PER_YEAR
from engine.panel import Panel

FEATURES: tuple[str, ...] = (
    "ret_5d",
    "ret_21d",
    "mom_12_1",
    "vol_20d",
    "trend_50",
    "trend_200",
    "volume_trend",
    "dollar_volume",
    "pct_from_52w_high",
    "pct_from_52w_low",
)
FEATURE_WINDOW = 252
"""Bars the longest feature reads (the bar itself included); a row needs this many for every feature."""

Reducer = Callable[..., np.ndarray]


def _rolling(x: np.ndarray, n: int, reduce: Reducer) -> np.ndarray:
    """``reduce`` over the ``n`` values ending at each column; NaN for the first ``n - 1`` columns."""
    out = np.full(x.shape, np.nan)
    if x.shape[1] >= n:
        out[:, n - 1 :] = reduce(sliding_window_view(x, n, axis=1), axis=-1)
    return out


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` shifted right by ``k`` columns (the value ``k`` bars earlier); NaN where there is none."""
    out = np.full(x.shape, np.nan)
    if x.shape[1] > k:
        out[:, k:] = x[:, : x.shape[1] - k]
    return out


def feature_series(close: np.ndarray, high: np.ndarray, low: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """``(S, T, F)`` features of every bar of ``(S, T)`` left-aligned bar arrays (columns of FEATURES).

    Column ``t`` reads only columns ``t - FEATURE_WINDOW + 1 .. t``: no look-ahead. NaN padding
    on the right of a row gives NaN features there.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ret = np.log(close / _lag(close, 1))
        n = 20
        sum_r = _rolling(log_ret, n, np.sum)
        sum_r2 = _rolling(log_ret * log_ret, n, np.sum)
        variance = np.maximum((sum_r2 - sum_r * sum_r / n) / (n - 1), 0.0)
        columns = {
            "ret_5d": close / _lag(close, 5) - 1.0,
            "ret_21d": close / _lag(close, 21) - 1.0,
            "mom_12_1": _lag(close, 21) / _lag(close, FEATURE_WINDOW - 1) - 1.0,
            "vol_20d": np.sqrt(variance) * math.sqrt(TRADING_DAYS_PER_YEAR),
            "trend_50": close / _rolling(close, 50, np.mean) - 1.0,
            "trend_200": close / _rolling(close, 200, np.mean) - 1.0,
            "volume_trend": np.log(_rolling(volume, 5, np.mean) / _rolling(volume, 60, np.mean)),
            "dollar_volume": np.log(_rolling(close * volume, 20, np.mean)),
            "pct_from_52w_high": close / _rolling(high, FEATURE_WINDOW, np.max) - 1.0,
            "pct_from_52w_low": close / _rolling(low, FEATURE_WINDOW, np.min) - 1.0,
        }
    out = np.stack([columns[name] for name in FEATURES], axis=-1)
    out[~np.isfinite(out)] = np.nan
    return out


def features_at_last(panel: Panel) -> np.ndarray:
    """``(S, F)`` features at each panel row's last bar, from its last FEATURE_WINDOW bars only.

    Rows shorter than FEATURE_WINDOW get NaN for the features whose window they lack.
    """
    window = min(FEATURE_WINDOW, int(panel.lengths.max()))
    series = feature_series(*(panel.tail(getattr(panel, name), window) for name in ("close", "high", "low", "volume")))
    return series[:, -1, :]
