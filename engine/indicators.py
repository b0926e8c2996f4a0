"""Vectorised technical indicators over a :class:`~engine.panel.Panel`.

Series functions take ``(S, T)`` float64 arrays laid out like a panel (each row starts at
column 0, NaN padding only on the right) and return ``(S, T)`` series that are NaN before
their warm-up and past each row's end. They match TA-Lib's definitions, seeding included
(on the real data within 3e-11 relative, or 2e-12 absolute for MACD values near zero);
recursive filters run through ``scipy.signal.lfilter`` along the rows, windows through
cumulative sums.
Every value at column ``t`` depends only on columns ``0..t`` (no look-ahead).

Deviations from TA-Lib, all confined to flat stretches where the ratio is 0/0 (none occurs in
the real data set): TA-Lib writes RSI 0 when average gain + loss < 1e-8, +DI/-DI 0 when the
smoothed true range < 1e-8, and keeps the previous ADX when a DX is undefined. Here those
values are NaN (and an undefined DX makes the rest of that row's ADX NaN, because a linear
filter cannot skip a bar), so a flat or empty price history reads as undefined, never as
"oversold" or "no trend".

:func:`compute_indicators` gathers each row's value at its last bar. Definitions (returns and
percentages are fractions; any value whose window a row does not have is NaN, never 0):

* ``ret_k`` = close[-1] / close[-1-k] - 1 for k = 1, 5, 21.
* ``vol_20d`` = sample std (ddof=1) of the last 20 daily log returns x sqrt(252).
* ``avg_volume_20`` = mean of the last 20 volumes; ``dollar_volume_20`` = mean of close x volume
  over the last 20 bars; ``volume_ratio`` = last volume / avg_volume_20.
* ``high_52w`` / ``low_52w`` = max(high) / min(low) over the last 252 bars including the last
  (all bars when the row is shorter); ``pct_from_52w_high`` = close / high_52w - 1 (<= 0 for
  consistent bars), ``pct_from_52w_low`` = close / low_52w - 1 (>= 0).
* ``sma_50_slope`` = sma_50 / sma_50 ten bars earlier - 1; ``sma_200_slope`` = sma_200 /
  sma_200 twenty bars earlier - 1; ``macd_hist_prev`` = macd_hist five bars before the last.
* ``obv_trend`` = (obv - obv twenty bars earlier) / (20 x avg_volume_20): the last 20 bars'
  up-day volume minus down-day volume as a fraction of their total volume, in [-1, 1].
* ``macd`` / ``macd_signal`` / ``macd_hist`` are ``talib.MACD``'s, whose fast EMA is seeded
  later than ``ema_12``, so ``macd`` equals ema_12 - ema_26 only once that seed has decayed.
* ``bb_pct_b`` = (close - lower) / (upper - lower); ``bb_width`` = (upper - lower) / middle;
  ``atr_pct`` = atr_14 / close.
* ``obv`` is cumulative from the window's first bar (TA-Lib starts it at volume[0]), so its
  level depends on the window; ``obv_trend`` does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from engine.panel import Panel

MIN_HISTORY = 252
"""Bars a row needs for every field of :class:`IndicatorSet` to be defined."""

TRADING_DAYS_PER_YEAR = 252
_TA_ZERO = 1e-8  # TA-Lib's TA_IS_ZERO threshold


def _recurse(x: np.ndarray, start: int, seed: np.ndarray, decay: float, gain: float) -> np.ndarray:
    """``out[:, start] = seed``; ``out[:, t] = decay * out[:, t-1] + gain * x[:, t]`` after; NaN before."""
    out = np.empty(x.shape)
    out[:, : min(start, x.shape[1])] = np.nan
    if start >= x.shape[1]:
        return out
    out[:, start] = seed
    if start + 1 < x.shape[1]:
        zi = (decay * seed)[:, None]
        out[:, start + 1 :] = lfilter([gain], [1.0, -decay], x[:, start + 1 :], axis=1, zi=zi)[0]
    return out


def _smooth(x: np.ndarray, n: int, alpha: float, start: int) -> np.ndarray:
    """Exponential smoothing seeded at column ``start`` with the mean of the ``n`` values ending there."""
    if start >= x.shape[1]:
        return np.full(x.shape, np.nan)
    seed = x[:, start - n + 1 : start + 1].mean(axis=1)
    return _recurse(x, start, seed, 1.0 - alpha, alpha)


def _changes(x: np.ndarray) -> np.ndarray:
    """``x[:, t] - x[:, t-1]``, NaN at column 0."""
    out = np.empty(x.shape)
    out[:, 0] = np.nan
    np.subtract(x[:, 1:], x[:, :-1], out=out[:, 1:])
    return out


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last ``n`` values; first value at column ``n - 1``."""
    out = np.full(x.shape, np.nan)
    if n > x.shape[1]:
        return out
    c = np.cumsum(x, axis=1)
    out[:, n - 1] = c[:, n - 1]
    np.subtract(c[:, n:], c[:, :-n], out=out[:, n:])
    out /= n
    return out


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """EMA with alpha = 2/(n+1), seeded with the SMA of the first ``n`` values at column ``n - 1`` (TA-Lib)."""
    return _smooth(x, n, 2.0 / (n + 1), n - 1)


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """TA-Lib RSI: Wilder averages of gains and losses seeded with the mean of the first ``n`` changes.

    First value at column ``n``. NaN where average gain + loss < 1e-8 (TA-Lib writes 0).
    """
    change = _changes(close)
    gain = _smooth(np.maximum(change, 0.0), n, 1.0 / n, n)
    total = _smooth(np.abs(change, out=change), n, 1.0 / n, n)  # avg gain + avg loss, by linearity
    total[total < _TA_ZERO] = np.nan
    gain *= 100.0
    gain /= total
    return gain


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high - low, |high - prev close|, |low - prev close|); NaN at column 0 (TA-Lib TRANGE)."""
    out = np.empty(high.shape)
    out[:, 0] = np.nan
    body, prev = out[:, 1:], close[:, :-1]
    span = high[:, 1:] - prev
    np.abs(span, out=body)
    np.subtract(low[:, 1:], prev, out=span)
    np.maximum(body, np.abs(span, out=span), out=body)
    np.maximum(body, np.subtract(high[:, 1:], low[:, 1:], out=span), out=body)
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """TA-Lib ATR: Wilder average of the true range seeded with the mean of TR[1..n]; first value at ``n``."""
    return _atr(true_range(high, low, close), n)


def _atr(tr: np.ndarray, n: int) -> np.ndarray:
    return _smooth(tr, n, 1.0 / n, n)


def macd(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(macd, signal, hist)`` exactly as ``talib.MACD``.

    Both EMAs are seeded at column ``slow - 1`` (the fast one with the SMA of the ``fast`` values
    ending there, so it starts later than :func:`ema` would and differs from it until the seed
    has decayed); the signal EMA is seeded with the mean of the first ``signal`` MACD values;
    all three outputs start at column ``slow + signal - 2``.
    """
    fast, slow = min(fast, slow), max(fast, slow)
    return _macd(_smooth(close, fast, 2.0 / (fast + 1), slow - 1), ema(close, slow), slow - 1, signal)


def _macd(
    fast_ema: np.ndarray, slow_ema: np.ndarray, start: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    line = fast_ema - slow_ema
    sig = _smooth(line, signal, 2.0 / (signal + 1), start + signal - 1)
    line[:, : start + signal - 1] = np.nan
    return line, sig, line - sig


def bollinger(close: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(upper, middle, lower)``: SMA ± k population std (ddof=0) of the last ``n`` closes.

    As TA-Lib, the variance is mean(x²) - mean(x)² and a variance below 1e-8 counts as 0.
    """
    middle = sma(close, n)
    var = sma(close * close, n) - middle * middle
    width = k * np.sqrt(np.maximum(var, 0.0))
    width[var < _TA_ZERO] = 0.0
    return middle + width, middle, middle - width


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(adx, plus_di, minus_di)`` as TA-Lib's ADX, PLUS_DI and MINUS_DI.

    TR, +DM and -DM are seeded with the sum of their first ``n - 1`` values (columns 1..n-1)
    and smoothed as ``S = S - S/n + x``; DI = 100 S_dm / S_tr from column ``n``; ADX is
    seeded with the mean of the first ``n`` DX values and Wilder-smoothed, first at ``2n - 1``.
    NaN where TA-Lib would divide by a (near-)zero TR or DI sum; see the module docstring.
    """
    return _adx(true_range(high, low, close), high, low, n)


def _adx(tr: np.ndarray, high: np.ndarray, low: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = high.shape[0]
    raw = np.empty((3 * s, high.shape[1]))
    raw[:s] = tr
    up, down = raw[s : 2 * s], raw[2 * s :]
    up[:, 0] = down[:, 0] = np.nan
    np.subtract(high[:, 1:], high[:, :-1], out=up[:, 1:])
    np.subtract(low[:, :-1], low[:, 1:], out=down[:, 1:])
    plus, minus = (up > down) & (up > 0), (down > up) & (down > 0)
    np.multiply(up, plus, out=up)
    np.multiply(down, minus, out=down)
    smoothed = _recurse(raw, n - 1, raw[:, 1:n].sum(axis=1), 1.0 - 1.0 / n, 1.0)
    smoothed[:, :n] = np.nan  # TA-Lib's first DI is one smoothing step after the seed
    scale, plus_di, minus_di = smoothed[:s], smoothed[s : 2 * s], smoothed[2 * s :]
    scale[scale < _TA_ZERO] = np.nan
    np.divide(100.0, scale, out=scale)
    plus_di *= scale
    minus_di *= scale
    di_sum = plus_di + minus_di
    di_sum[di_sum < _TA_ZERO] = np.nan
    dx = np.abs(plus_di - minus_di)
    dx *= 100.0
    dx /= di_sum
    return _smooth(dx, n, 1.0 / n, 2 * n - 1), plus_di, minus_di


def obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """On-balance volume starting at volume[0] (TA-Lib), then ± volume on up/down closes."""
    signed = np.sign(_changes(close)) * volume
    signed[:, 0] = volume[:, 0]
    return np.cumsum(signed, axis=1, out=signed)


@dataclass(frozen=True, eq=False)
class IndicatorSet:
    """Each row's indicator values at its last bar, all ``(S,)`` float64 (see the module docstring)."""

    close: np.ndarray
    sma_20: np.ndarray
    sma_50: np.ndarray
    sma_200: np.ndarray
    ema_12: np.ndarray
    ema_26: np.ndarray
    macd: np.ndarray
    macd_signal: np.ndarray
    macd_hist: np.ndarray
    rsi_14: np.ndarray
    atr_14: np.ndarray
    bb_upper: np.ndarray
    bb_middle: np.ndarray
    bb_lower: np.ndarray
    adx_14: np.ndarray
    plus_di_14: np.ndarray
    minus_di_14: np.ndarray
    obv: np.ndarray
    ret_1d: np.ndarray
    ret_5d: np.ndarray
    ret_21d: np.ndarray
    vol_20d: np.ndarray
    avg_volume_20: np.ndarray
    dollar_volume_20: np.ndarray
    high_52w: np.ndarray
    low_52w: np.ndarray
    pct_from_52w_high: np.ndarray
    pct_from_52w_low: np.ndarray
    sma_50_slope: np.ndarray
    sma_200_slope: np.ndarray
    macd_hist_prev: np.ndarray
    volume_ratio: np.ndarray
    obv_trend: np.ndarray
    bb_pct_b: np.ndarray
    bb_width: np.ndarray
    atr_pct: np.ndarray


def _window_means(panel: Panel, x: np.ndarray, n: int, back: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the ``n`` values ending at each row's last bar, and of the ``n`` ending ``back`` bars earlier."""
    window = panel.tail(x, n + back)
    return window[:, back:].mean(axis=1), window[:, :n].mean(axis=1)


def compute_indicators(panel: Panel) -> IndicatorSet:
    """Every indicator at each row's last bar (``lengths - 1``); reads no column past it.

    Recursive indicators run over each row's whole history, so they equal the series functions
    at the last bar exactly; windowed ones (SMAs, Bollinger) are computed from each row's last
    bars only, which is faster and avoids the cancellation of a long running sum (they equal
    the series to ~1e-11 relative). Rows shorter than a window get NaN for the values that need
    it (see ``MIN_HISTORY``). Pure: the panel is not modified.
    """
    c, h, lo, v = panel.close, panel.high, panel.low, panel.volume
    last, tail = panel.last, panel.tail
    tr = true_range(h, lo, c)
    ema_12, ema_26 = ema(c, 12), ema(c, 26)
    macd_line, macd_signal, macd_hist = _macd(_smooth(c, 12, 2.0 / 13, 25), ema_26, 25, 9)
    adx_14, plus_di, minus_di = _adx(tr, h, lo, 14)
    obv_series = obv(c, v)
    sma_50, sma_50_before = _window_means(panel, c, 50, 10)
    sma_200, sma_200_before = _window_means(panel, c, 200, 20)
    upper, middle, lower = (band[:, -1] for band in bollinger(tail(c, 20)))
    close = last(c)
    high_52w = np.nanmax(tail(h, TRADING_DAYS_PER_YEAR), axis=1)
    low_52w = np.nanmin(tail(lo, TRADING_DAYS_PER_YEAR), axis=1)
    avg_volume = tail(v, 20).mean(axis=1)
    log_returns = np.diff(np.log(tail(c, 21)), axis=1)
    atr_14 = last(_atr(tr, 14))
    obv_last = last(obv_series)
    with np.errstate(divide="ignore", invalid="ignore"):
        return IndicatorSet(
            close=close,
            sma_20=middle,
            sma_50=sma_50,
            sma_200=sma_200,
            ema_12=last(ema_12),
            ema_26=last(ema_26),
            macd=last(macd_line),
            macd_signal=last(macd_signal),
            macd_hist=last(macd_hist),
            rsi_14=last(rsi(c)),
            atr_14=atr_14,
            bb_upper=upper,
            bb_middle=middle,
            bb_lower=lower,
            adx_14=last(adx_14),
            plus_di_14=last(plus_di),
            minus_di_14=last(minus_di),
            obv=obv_last,
            ret_1d=close / last(c, 1) - 1.0,
            ret_5d=close / last(c, 5) - 1.0,
            ret_21d=close / last(c, 21) - 1.0,
            vol_20d=log_returns.std(axis=1, ddof=1) * math.sqrt(TRADING_DAYS_PER_YEAR),
            avg_volume_20=avg_volume,
            dollar_volume_20=(tail(c, 20) * tail(v, 20)).mean(axis=1),
            high_52w=high_52w,
            low_52w=low_52w,
            pct_from_52w_high=close / high_52w - 1.0,
            pct_from_52w_low=close / low_52w - 1.0,
            sma_50_slope=sma_50 / sma_50_before - 1.0,
            sma_200_slope=sma_200 / sma_200_before - 1.0,
            macd_hist_prev=last(macd_hist, 5),
            volume_ratio=last(v) / avg_volume,
            obv_trend=(obv_last - last(obv_series, 20)) / (20.0 * avg_volume),
            bb_pct_b=(close - lower) / (upper - lower),
            bb_width=(upper - lower) / middle,
            atr_pct=atr_14 / close,
        )
