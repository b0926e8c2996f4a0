"""Every field of the screen language as a series over a panel, and weekly bars.

A ``Source`` answers "the last ``k`` values of field ``name``" as an ``(S, k)`` array, right
aligned (column ``k - 1`` is each row's last bar; NaN before a row's first bar). On the last
bar alone it answers from the values the scan computed for the result row, so a plain
comparison sees exactly the row's numbers; over several bars it computes the field's whole
series once per panel with the engine's series functions. Every value at a bar depends only
on that bar and earlier ones. Booleans are 1.0 / 0.0, undefined is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine import indicators as ta
from engine.panel import Aligned, Panel
from engine.scoring import rating_of, subscore_z, subscores_of
from engine.screens.catalogue import SUBSCORE_FIELDS

YEAR = ta.TRADING_DAYS_PER_YEAR


@dataclass(frozen=True, eq=False)
class Benchmark:
    """The series relative strength is measured against: ``levels`` on ``dates`` (increasing
    ``datetime64[D]``). ``label`` says what it is (a symbol, or the equal-weighted universe)."""

    dates: np.ndarray
    levels: np.ndarray
    label: str


def shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` ``k`` bars before (NaN for the first ``k`` columns)."""
    out = np.full(x.shape, np.nan)
    if k < x.shape[1]:
        out[:, k:] = x[:, : x.shape[1] - k]
    return out


def windows(x: np.ndarray, n: int) -> np.ndarray:
    """``(S, T, n)`` view of the ``n`` values ending at each column; NaN where a window starts
    before column 0."""
    padded = np.concatenate([np.full((x.shape[0], n - 1), np.nan), x], axis=1)
    return sliding_window_view(padded, n, axis=1)


def compare(a: np.ndarray, b: np.ndarray, op: str) -> np.ndarray:
    """``a op b`` as 1.0 / 0.0, NaN where either side is undefined."""
    with np.errstate(invalid="ignore"):
        result = {
            "<": np.less,
            "<=": np.less_equal,
            ">": np.greater,
            ">=": np.greater_equal,
            "==": np.equal,
            "!=": np.not_equal,
        }[op](a, b)
    out = result.astype(float)
    out[np.isnan(a) | np.isnan(b)] = np.nan
    return out


def _ret(c: np.ndarray, k: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return c / shift(c, k) - 1.0


def _expanding(x: np.ndarray, n: int, reduce: Callable[..., np.ndarray], neutral: float) -> np.ndarray:
    """``reduce`` over the last ``n`` values, or over every value so far when there are fewer
    (the window is padded with ``reduce``'s ``neutral`` value, not with NaN)."""
    padded = np.concatenate([np.full((x.shape[0], n - 1), neutral), x], axis=1)
    return np.asarray(reduce(sliding_window_view(padded, n, axis=1), axis=-1))


class Source:
    """Fields of ``panel``: ``last`` holds ``(S,)`` values on each row's last bar (the result
    row's), ``benchmark`` serves the ``rs_*`` fields."""

    def __init__(
        self,
        panel: Panel | WeeklyPanel,
        last: Mapping[str, np.ndarray] | None = None,
        benchmark: Benchmark | None = None,
    ) -> None:
        self.panel = panel
        self.last = dict(last or {})
        self.benchmark = benchmark
        self._series: dict[str, np.ndarray] = {}
        self._weekly: Source | None = None

    def tail(self, name: str, k: int) -> np.ndarray:
        if k == 1 and name in self.last:
            return np.asarray(self.last[name], dtype=float)[:, None]
        return self.panel.tail(self.series(name), k)

    def series(self, name: str) -> np.ndarray:
        if name not in self._series:
            self._series[name] = self._compute(name)
        return self._series[name]

    def weekly(self) -> Source:
        if self._weekly is None:
            self._weekly = Source(WeeklyPanel(self.panel))
        return self._weekly

    def _compute(self, name: str) -> np.ndarray:
        p = self.panel
        if name in ("open", "high", "low", "close", "volume"):
            return np.asarray(getattr(p, name))
        if name in _PATTERNS:
            return _PATTERNS[name](self)
        if name.startswith("rs_"):
            return self._relative_strength(int(name[3:-1]))
        if name.startswith("ret_"):
            return _ret(p.close, int(name[4:-1]))
        if name == "tech_rating" or name in SUBSCORE_FIELDS:
            z = subscore_z(self._indicator_series())  # type: ignore[arg-type]
            self._series["tech_rating"] = rating_of(z)
            subscores = subscores_of(z)
            for field_name, sub in SUBSCORE_FIELDS.items():
                self._series[field_name] = subscores[sub]
            return self._series[name]
        if name in _INDICATORS:
            return _INDICATORS[name](self)
        raise ValueError(f"{name} has no series (it exists on the last bar only)")

    def _relative_strength(self, k: int) -> np.ndarray:
        if self.benchmark is None:
            raise ValueError("rs_* fields need a benchmark")
        b = self.benchmark
        dates = self.panel.dates
        at = np.clip(np.searchsorted(b.dates, dates), 0, len(b.dates) - 1)
        level = np.where(b.dates[at] == dates, b.levels[at], np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (1.0 + self.series(f"ret_{k}d")) / (1.0 + _ret(level, k)) - 1.0

    def _indicator_series(self) -> _Namespace:
        """Every input of the TechRating as a series (``engine.scoring.subscore_z`` reads them)."""
        s = self.series
        names = (
            "close", "sma_20", "sma_50", "sma_200", "atr_14", "plus_di_14", "minus_di_14", "adx_14", "ret_5d",
            "ret_21d", "vol_20d", "macd_hist", "pct_from_52w_high", "volume_ratio", "rsi_14",
        )  # fmt: skip
        out = {name: s(name) for name in names}
        with np.errstate(divide="ignore", invalid="ignore"):
            out["sma_50_slope"] = out["sma_50"] / shift(out["sma_50"], 10) - 1.0
            out["macd_hist_prev"] = shift(out["macd_hist"], 5)
            obv = s("obv")
            out["obv_trend"] = (obv - shift(obv, 20)) / (20.0 * s("avg_volume_20"))
            upper, lower = s("bb_upper"), s("bb_lower")
            out["bb_pct_b"] = (out["close"] - lower) / (upper - lower)
            out["atr_pct"] = out["atr_14"] / out["close"]
        return _Namespace(out)


class _Namespace(dict[str, np.ndarray]):
    """A dict read by attribute, as ``subscore_z`` reads an IndicatorSet."""

    def __getattr__(self, name: str) -> np.ndarray:
        return self[name]


def _macd(src: Source) -> None:
    c = src.panel.close
    line, signal, hist = ta.macd(c)
    src._series.update(macd=line, macd_signal=signal, macd_hist=hist)


def _bands(src: Source) -> None:
    upper, middle, lower = ta.bollinger(src.panel.close)
    src._series.update(bb_upper=upper, bb_middle=middle, bb_lower=lower)


def _adx(src: Source) -> None:
    p = src.panel
    adx, plus, minus = ta.adx(p.high, p.low, p.close)
    src._series.update(adx_14=adx, plus_di_14=plus, minus_di_14=minus)


def _many(fill: Callable[[Source], None], name: str) -> Callable[[Source], np.ndarray]:
    def compute(src: Source) -> np.ndarray:
        fill(src)
        return src._series[name]

    return compute


def _vol_20d(src: Source) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(src.panel.close / shift(src.panel.close, 1))
    return np.asarray(windows(r, 20).std(axis=-1, ddof=1)) * math.sqrt(YEAR)


def _pct_from(src: Source, side: str) -> np.ndarray:
    p = src.panel
    extreme = _expanding(p.high, YEAR, np.max, -np.inf) if side == "high" else _expanding(p.low, YEAR, np.min, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return p.close / extreme - 1.0


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


_INDICATORS: dict[str, Callable[[Source], np.ndarray]] = {
    "sma_20": lambda s: ta.sma(s.panel.close, 20),
    "sma_50": lambda s: ta.sma(s.panel.close, 50),
    "sma_200": lambda s: ta.sma(s.panel.close, 200),
    "ema_12": lambda s: ta.ema(s.panel.close, 12),
    "ema_26": lambda s: ta.ema(s.panel.close, 26),
    "rsi_14": lambda s: ta.rsi(s.panel.close),
    "atr_14": lambda s: ta.atr(s.panel.high, s.panel.low, s.panel.close),
    "obv": lambda s: ta.obv(s.panel.close, s.panel.volume),
    "vol_20d": _vol_20d,
    "avg_volume_20": lambda s: ta.sma(s.panel.volume, 20),
    "dollar_volume_20": lambda s: ta.sma(s.panel.close * s.panel.volume, 20),
    "volume_ratio": lambda s: _ratio(s.panel.volume, s.series("avg_volume_20")),
    "pct_from_52w_high": lambda s: _pct_from(s, "high"),
    "pct_from_52w_low": lambda s: _pct_from(s, "low"),
    **{name: _many(_macd, name) for name in ("macd", "macd_signal", "macd_hist")},
    **{name: _many(_bands, name) for name in ("bb_upper", "bb_middle", "bb_lower")},
    **{name: _many(_adx, name) for name in ("adx_14", "plus_di_14", "minus_di_14")},
}


def _breakout_20d(src: Source) -> np.ndarray:
    p = src.panel
    return compare(p.close, shift(np.asarray(windows(p.high, 20).max(axis=-1)), 1), ">")


def _new_extreme(src: Source, side: str) -> np.ndarray:
    p = src.panel
    if side == "high":
        return compare(p.high, np.asarray(windows(p.high, YEAR).max(axis=-1)), ">=")
    return compare(p.low, np.asarray(windows(p.low, YEAR).min(axis=-1)), "<=")


def _nr7(src: Source) -> np.ndarray:
    spread = src.panel.high - src.panel.low
    return compare(spread, shift(np.asarray(windows(spread, 6).min(axis=-1)), 1), "<")


def _inside_day(src: Source) -> np.ndarray:
    p = src.panel
    below, above = compare(p.high, shift(p.high, 1), "<"), compare(p.low, shift(p.low, 1), ">")
    out = below * above
    out[(below == 0) | (above == 0)] = 0.0
    return out


_PATTERNS: dict[str, Callable[[Source], np.ndarray]] = {
    "breakout_20d": _breakout_20d,
    "new_52w_high": lambda s: _new_extreme(s, "high"),
    "new_52w_low": lambda s: _new_extreme(s, "low"),
    "nr7": _nr7,
    "inside_day": _inside_day,
    "gap_up": lambda s: compare(s.panel.open, shift(s.panel.high, 1), ">"),
    "gap_down": lambda s: compare(s.panel.open, shift(s.panel.low, 1), "<"),
}


class WeeklyPanel(Aligned):
    """Weekly bars of each row of ``daily``: a week (Monday to Sunday) ends on its last bar; open
    is its first open, high the highest high, low the lowest low, close the last close, volume
    the sum. The last week is the current one as it stands. The weeks are found once; each
    column is built the first time it is read (most screens read the closes only)."""

    def __init__(self, daily: Panel | WeeklyPanel) -> None:
        s, t = daily.close.shape
        self._valid = np.arange(t)[None, :] < daily.lengths[:, None]
        rows = np.broadcast_to(np.arange(s)[:, None], (s, t))[self._valid]
        week = (daily.dates[self._valid].astype("int64") + 3) // 7  # 1970-01-01 was a Thursday
        self._starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (week[1:] != week[:-1])])
        self._ends = np.r_[self._starts[1:], len(rows)] - 1
        week_rows = rows[self._starts]
        self.lengths = np.bincount(week_rows, minlength=s).astype(np.int64)
        self._at = (week_rows, np.arange(len(self._starts)) - np.r_[0, np.cumsum(self.lengths)[:-1]][week_rows])
        self._daily = daily

    def _place(self, values: np.ndarray) -> np.ndarray:
        fill = np.datetime64("NaT") if values.dtype.kind == "M" else np.nan
        out = np.full((self.n_symbols, int(self.lengths.max())), fill, dtype=values.dtype)
        out[self._at] = values
        return out

    @cached_property
    def dates(self) -> np.ndarray:
        return self._place(self._daily.dates[self._valid][self._ends])

    @cached_property
    def open(self) -> np.ndarray:
        return self._place(self._daily.open[self._valid][self._starts])

    @cached_property
    def high(self) -> np.ndarray:
        return self._place(np.maximum.reduceat(self._daily.high[self._valid], self._starts))

    @cached_property
    def low(self) -> np.ndarray:
        return self._place(np.minimum.reduceat(self._daily.low[self._valid], self._starts))

    @cached_property
    def close(self) -> np.ndarray:
        return self._place(self._daily.close[self._valid][self._ends])

    @cached_property
    def volume(self) -> np.ndarray:
        return self._place(np.add.reduceat(self._daily.volume[self._valid], self._starts))


def equal_weight_index(closes: Mapping[str, tuple[np.ndarray, np.ndarray]], label: str) -> Benchmark:
    """The equal-weighted index of ``{symbol: (dates, closes)}``: each day's return is the mean of
    the finite daily returns of the symbols with a bar that day and the one before; level 1 on
    the first date."""
    dates_parts, returns_parts = [], []
    for dates, close in closes.values():
        if len(close) < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = close[1:] / close[:-1] - 1.0
        ok = np.isfinite(r)
        dates_parts.append(dates[1:][ok])
        returns_parts.append(r[ok])
    if not dates_parts:
        raise ValueError("an equal-weighted index needs at least one symbol with two bars")
    all_dates = np.concatenate(dates_parts)
    days, inverse = np.unique(all_dates, return_inverse=True)
    mean = np.bincount(inverse, weights=np.concatenate(returns_parts)) / np.bincount(inverse)
    first = min(d[0] for d, c in closes.values() if len(c) >= 2)
    return Benchmark(
        dates=np.r_[np.array([first], dtype="datetime64[D]"), days.astype("datetime64[D]")],
        levels=np.r_[1.0, np.cumprod(1.0 + mean)],
        label=label,
    )
