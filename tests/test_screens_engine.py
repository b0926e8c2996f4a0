"""Screens evaluated over the real 505 symbols: every field, function and pattern against an
independent pandas or TA-Lib computation at many bars, weekly bars against pandas resampling,
relative strength against a pandas equal-weighted index, rs_rating, undefined values, no
look-ahead, batch-size invariance, the rows' own values, skip accounting and finalization."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
import talib

from engine.config import ScanConfig
from engine.panel import build_panel
from engine.scan import INDICATOR_FIELDS, BatchOutput, scan_batch
from engine.screens.evaluate import evaluate
from engine.screens.language import ScreenError, parse
from engine.screens.screen import cross_section, rs_ratings
from engine.screens.series import Benchmark, Source, WeeklyPanel, equal_weight_index
from engine.types import Bars, Instrument

AS_OF = date(2016, 6, 30)  # a Thursday: the current week has four bars
LOOKBACK = 500
K = 260  # bars compared per symbol, the last one included
AGO = (1, 37, 199)  # and single bars that far back, through ago(...)
YEAR = 252


def windowed(bars: Mapping[str, Bars], as_of: date, lookback: int = LOOKBACK) -> dict[str, Bars]:
    out = {s: b.window(as_of, lookback) for s, b in bars.items()}
    return {s: b for s, b in out.items() if len(b)}


def cut(bars: Bars, m: int) -> Bars:
    """``bars`` without its last ``m`` bars (the same first bar)."""
    n = len(bars) - m
    return Bars(bars.dates[:n], bars.open[:n], bars.high[:n], bars.low[:n], bars.close[:n], bars.volume[:n])


def until(bars: Bars, day: date) -> Bars:
    """``bars`` with every bar after ``day`` removed."""
    n = int(np.searchsorted(bars.dates, np.datetime64(day, "D"), side="right"))
    return cut(bars, len(bars) - n)


def benchmark_of(bars: Mapping[str, Bars]) -> Benchmark:
    return equal_weight_index({s: (b.dates, b.close) for s, b in bars.items()}, "equal-weighted universe")


@pytest.fixture(scope="module")
def window(real_bars: dict[str, Bars]) -> dict[str, Bars]:
    return windowed(real_bars, AS_OF)


@pytest.fixture(scope="module")
def symbols(window: dict[str, Bars]) -> list[str]:
    return sorted(window)


@pytest.fixture(scope="module")
def benchmark(window: dict[str, Bars]) -> Benchmark:
    return benchmark_of(window)


@pytest.fixture(scope="module")
def source(window: dict[str, Bars], symbols: list[str], benchmark: Benchmark) -> Source:
    return Source(build_panel([window[s] for s in symbols]), benchmark=benchmark)


@pytest.fixture(scope="module")
def frames(window: dict[str, Bars], symbols: list[str]) -> list[pd.DataFrame]:
    """Each symbol's bars as a DataFrame on a positional index (bar 0 first)."""
    return [
        pd.DataFrame({f: getattr(window[s], f) for f in ("open", "high", "low", "close", "volume")}) for s in symbols
    ]


def right_tail(series: Sequence[np.ndarray], k: int = K) -> np.ndarray:
    """(S, k): each row's last ``k`` values, NaN before its first bar."""
    out = np.full((len(series), k), np.nan)
    for i, values in enumerate(series):
        values = np.asarray(values, dtype=float)
        n = min(k, len(values))
        out[i, k - n :] = values[len(values) - n :]
    return out


def values(text: str, source: Source, k: int = K) -> np.ndarray:
    """``text`` (a condition or a number) over each row's last ``k`` bars."""
    try:
        expr = parse(text)
    except ScreenError:
        expr = parse(text, "rank_by", "number")
    return evaluate(expr.root, source, k)


def assert_series(
    text: str, source: Source, expected: np.ndarray, tol: float = 1e-9, ties: np.ndarray | None = None
) -> None:
    """``text`` over the last K bars and at single bars back (through ago) equals ``expected``
    (same undefined values, the defined ones within ``tol`` relative and absolute), except where
    ``ties`` marks a comparison of two equal numbers that rounding may decide either way."""
    assert np.isfinite(expected[:, -1]).mean() > 0.9  # the comparison is not vacuous
    ties = np.zeros(expected.shape, dtype=bool) if ties is None else ties
    assert ties.mean() < 1e-3
    got = values(text, source)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got[~ties], expected[~ties], rtol=tol, atol=tol, equal_nan=True, err_msg=text)
    for m in AGO:
        back = values(f"ago({text}, {m})", source, 1)[:, 0]
        keep = ~ties[:, K - 1 - m]
        np.testing.assert_allclose(
            back[keep], expected[keep, K - 1 - m], rtol=tol, atol=tol, equal_nan=True, err_msg=text
        )


# --- Fields against TA-Lib and pandas ----------------------------------------------------------

TALIB: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "sma_20": lambda d: talib.SMA(d.close.to_numpy(), 20),
    "sma_50": lambda d: talib.SMA(d.close.to_numpy(), 50),
    "sma_200": lambda d: talib.SMA(d.close.to_numpy(), 200),
    "ema_12": lambda d: talib.EMA(d.close.to_numpy(), 12),
    "ema_26": lambda d: talib.EMA(d.close.to_numpy(), 26),
    "rsi_14": lambda d: talib.RSI(d.close.to_numpy(), 14),
    "atr_14": lambda d: talib.ATR(d.high.to_numpy(), d.low.to_numpy(), d.close.to_numpy(), 14),
    "macd": lambda d: talib.MACD(d.close.to_numpy(), 12, 26, 9)[0],
    "macd_signal": lambda d: talib.MACD(d.close.to_numpy(), 12, 26, 9)[1],
    "macd_hist": lambda d: talib.MACD(d.close.to_numpy(), 12, 26, 9)[2],
    "bb_upper": lambda d: talib.BBANDS(d.close.to_numpy(), 20, 2.0, 2.0)[0],
    "bb_middle": lambda d: talib.BBANDS(d.close.to_numpy(), 20, 2.0, 2.0)[1],
    "bb_lower": lambda d: talib.BBANDS(d.close.to_numpy(), 20, 2.0, 2.0)[2],
    "adx_14": lambda d: talib.ADX(d.high.to_numpy(), d.low.to_numpy(), d.close.to_numpy(), 14),
    "obv": lambda d: talib.OBV(d.close.to_numpy(), d.volume.to_numpy()),
}

PANDAS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "ret_1d": lambda d: d.close / d.close.shift(1) - 1,
    "ret_5d": lambda d: d.close / d.close.shift(5) - 1,
    "ret_21d": lambda d: d.close / d.close.shift(21) - 1,
    "ret_63d": lambda d: d.close / d.close.shift(63) - 1,
    "ret_126d": lambda d: d.close / d.close.shift(126) - 1,
    "ret_252d": lambda d: d.close / d.close.shift(252) - 1,
    "vol_20d": lambda d: np.log(d.close).diff().rolling(20).std(ddof=1) * math.sqrt(252),
    "avg_volume_20": lambda d: d.volume.rolling(20).mean(),
    "dollar_volume_20": lambda d: (d.close * d.volume).rolling(20).mean(),
    "volume_ratio": lambda d: d.volume / d.volume.rolling(20).mean(),
    # the extreme of the last 252 bars, or of every bar so far when there are fewer (as the rows)
    "pct_from_52w_high": lambda d: d.close / d.high.rolling(YEAR, min_periods=1).max() - 1,
    "pct_from_52w_low": lambda d: d.close / d.low.rolling(YEAR, min_periods=1).min() - 1,
}


@pytest.mark.parametrize("name", sorted(TALIB))
def test_each_indicator_field_matches_talib_on_every_symbol_at_each_of_its_last_260_bars(
    name: str, source: Source, frames: list[pd.DataFrame]
) -> None:
    assert_series(name, source, right_tail([TALIB[name](d) for d in frames]))


@pytest.mark.parametrize("name", sorted(PANDAS))
def test_each_return_volume_and_range_field_matches_pandas_on_every_symbol_at_each_of_its_last_260_bars(
    name: str, source: Source, frames: list[pd.DataFrame]
) -> None:
    assert_series(name, source, right_tail([np.asarray(PANDAS[name](d)) for d in frames]))


def test_pct_from_52w_high_is_defined_with_less_than_a_year_of_bars_as_in_the_rows(
    source: Source, symbols: list[str], window: dict[str, Bars]
) -> None:
    short = symbols.index("UA")  # 59 bars up to AS_OF
    assert len(window["UA"]) < YEAR
    got = values("pct_from_52w_high", source)[short, -len(window["UA"]) :]
    expected = window["UA"].close / np.maximum.accumulate(window["UA"].high) - 1
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isnan(values("new_52w_high", source)[short]).all()  # a 52-week high needs 252 bars


# --- Functions against pandas ------------------------------------------------------------------


def three_valued(known_false: Any, undefined: Any) -> np.ndarray:
    """1.0, or 0.0 where ``known_false``, else NaN where ``undefined`` (Kleene and of the parts)."""
    return np.where(np.asarray(known_false), 0.0, np.where(np.asarray(undefined), np.nan, 1.0))


def compared(a: pd.Series, b: pd.Series, op: str) -> pd.Series:
    out = getattr(a, op)(b).astype(float)
    out[a.isna() | b.isna()] = np.nan
    return out


def crossed(a: pd.Series, b: pd.Series, n: int, above: bool) -> tuple[np.ndarray, np.ndarray]:
    """a crossed b within the last n bars: a <= b on one bar and a > b on the next (>= and <
    for below); true when any of the n crossings holds, else undefined when one is undefined.
    Also the bars whose window holds a tie (a and b equal to 1e-9: a flat stretch against its
    own average), which the rounding of either computation may decide either way."""
    before = compared(a.shift(1), b.shift(1), "le" if above else "ge")
    after = compared(a, b, "gt" if above else "lt")
    cross = pd.Series(three_valued((before == 0) | (after == 0), before.isna() | after.isna()))
    tie = ((a - b).abs() <= 1e-9 * b.abs()).astype(float)
    tie = ((tie + tie.shift(1).fillna(0.0)) > 0).astype(float)

    def within(x: pd.Series, before_first: float) -> np.ndarray:  # over the n crossings ending at each bar
        padded = pd.concat([pd.Series([before_first] * n), x], ignore_index=True)
        return padded.rolling(n).sum().to_numpy()[n:]

    any_true = within((cross == 1).astype(float), 0.0) > 0
    any_undefined = within(cross.isna().astype(float), 1.0) > 0  # a bar before the first is undefined
    return np.where(any_true, 1.0, np.where(any_undefined, np.nan, 0.0)), within(tie, 0.0) > 0


def sma(x: pd.Series, n: int) -> pd.Series:
    return x.rolling(n).mean()


def nr7(d: pd.DataFrame) -> pd.Series:
    spread = d.high - d.low
    return compared(spread, spread.shift(1).rolling(6).min(), "lt")


FUNCTIONS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "ago(close, 5)": lambda d: d.close.shift(5),
    "ago(nr7, 3)": lambda d: nr7(d).shift(3),
    "highest(high, 20)": lambda d: d.high.rolling(20).max(),
    "lowest(low, 63)": lambda d: d.low.rolling(63).min(),
    "average(volume, 50)": lambda d: d.volume.rolling(50).mean(),
    "average(close * volume, 20)": lambda d: (d.close * d.volume).rolling(20).mean(),
    "highest(average(close, 10), 5)": lambda d: sma(d.close, 10).rolling(5).max(),
    "change(close, 21)": lambda d: d.close / d.close.shift(21) - 1,
    "change(sma_50, 10)": lambda d: sma(d.close, 50) / sma(d.close, 50).shift(10) - 1,
    "count(close > open, 10)": lambda d: compared(d.close, d.open, "gt").rolling(10).sum(),
    "count(nr7, 30)": lambda d: nr7(d).rolling(30).sum(),
    "abs(change(close, 5))": lambda d: (d.close / d.close.shift(5) - 1).abs(),
    "min(open, close)": lambda d: np.minimum(d.open, d.close),
    "max(high - close, close - low)": lambda d: np.maximum(d.high - d.close, d.close - d.low),
    # x / 0 is undefined, not infinite
    "(close - open) / (high - low) * 2 + -1": lambda d: ((d.close - d.open) / (d.high - d.low) * 2 - 1).replace(
        [np.inf, -np.inf], np.nan
    ),
}


@pytest.mark.parametrize("text", list(FUNCTIONS))
def test_each_function_matches_pandas_on_every_symbol_at_each_of_its_last_260_bars(
    text: str, source: Source, frames: list[pd.DataFrame]
) -> None:
    expected = right_tail([np.asarray(FUNCTIONS[text](d), dtype=float) for d in frames])
    if text.startswith("ago(nr7"):  # both outcomes occur: the boolean is tested
        assert {0.0, 1.0} <= set(np.unique(expected[np.isfinite(expected)]))
    assert_series(text, source, expected)


CROSSINGS: dict[str, Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]] = {
    "crossed_above(close, sma_20, 5)": lambda d: crossed(d.close, sma(d.close, 20), 5, above=True),
    "crossed_below(close, sma_20, 5)": lambda d: crossed(d.close, sma(d.close, 20), 5, above=False),
    "crossed_above(ema_12, sma_50, 10)": lambda d: crossed(
        pd.Series(talib.EMA(d.close.to_numpy(), 12)), sma(d.close, 50), 10, above=True
    ),
    "crossed_below(rsi_14, 30, 1)": lambda d: crossed(
        pd.Series(talib.RSI(d.close.to_numpy(), 14)), pd.Series(30.0, index=d.index), 1, above=False
    ),
}


@pytest.mark.parametrize("text", list(CROSSINGS))
def test_each_crossing_matches_an_explicit_pandas_crossing_on_every_symbol_at_each_of_its_last_260_bars(
    text: str, source: Source, frames: list[pd.DataFrame]
) -> None:
    results = [CROSSINGS[text](d) for d in frames]
    expected = right_tail([r[0] for r in results])
    ties = right_tail([r[1].astype(float) for r in results]) == 1.0
    assert {0.0, 1.0} <= set(np.unique(expected[np.isfinite(expected)]))
    assert_series(text, source, expected, tol=0.0, ties=ties)


def test_a_crossing_is_a_bar_at_or_below_followed_by_a_bar_above(source: Source, window: dict[str, Bars]) -> None:
    """One symbol by hand: the bars where close crossed above its 20-day average."""
    symbols = sorted(window)
    i = symbols.index("AAPL")
    close = window["AAPL"].close
    average = pd.Series(close).rolling(20).mean().to_numpy()
    hand = [t for t in range(20, len(close)) if close[t - 1] <= average[t - 1] and close[t] > average[t]]
    got = values("crossed_above(close, sma_20, 1)", source, len(close))[i]
    assert np.flatnonzero(got == 1.0).tolist() == hand
    assert len(hand) > 5


# --- Patterns ----------------------------------------------------------------------------------

PATTERNS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "breakout_20d": lambda d: compared(d.close, d.high.shift(1).rolling(20).max(), "gt"),
    "new_52w_high": lambda d: compared(d.high, d.high.rolling(YEAR).max(), "ge"),
    "new_52w_low": lambda d: compared(d.low, d.low.rolling(YEAR).min(), "le"),
    "nr7": nr7,
    "inside_day": lambda d: three_valued(
        (compared(d.high, d.high.shift(1), "lt") == 0) | (compared(d.low, d.low.shift(1), "gt") == 0),
        d.high.shift(1).isna(),
    ),
    "gap_up": lambda d: compared(d.open, d.high.shift(1), "gt"),
    "gap_down": lambda d: compared(d.open, d.low.shift(1), "lt"),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_pattern_matches_its_pandas_definition_on_every_symbol_at_each_of_its_last_260_bars(
    name: str, source: Source, frames: list[pd.DataFrame]
) -> None:
    expected = right_tail([np.asarray(PATTERNS[name](d), dtype=float) for d in frames])
    assert {0.0, 1.0} <= set(np.unique(expected[np.isfinite(expected)]))
    assert_series(name, source, expected, tol=0.0)


# --- Weekly bars -------------------------------------------------------------------------------


def pandas_weeks(bars: Bars) -> pd.DataFrame:
    """Weeks Monday to Sunday (W-SUN) of the bars, each dated by its last trading day."""
    d = pd.DataFrame(
        {f: getattr(bars, f) for f in ("open", "high", "low", "close", "volume")}, index=pd.DatetimeIndex(bars.dates)
    )
    d["day"] = d.index
    weeks = d.resample("W-SUN").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "day": "last"}
    )
    return weeks.dropna(subset=["close"])


@pytest.fixture(scope="module")
def weeks(window: dict[str, Bars], symbols: list[str]) -> list[pd.DataFrame]:
    return [pandas_weeks(window[s]) for s in symbols]


def test_weekly_bars_are_monday_to_sunday_weeks_ending_on_their_last_trading_day(
    source: Source, symbols: list[str], weeks: list[pd.DataFrame]
) -> None:
    weekly = WeeklyPanel(source.panel)
    for i, s in enumerate(symbols):
        expected = weeks[i]
        n = int(weekly.lengths[i])
        assert n == len(expected), s
        assert weekly.dates[i, :n].tolist() == [d.date() for d in expected["day"]], s
        for f in ("open", "high", "low", "close", "volume"):
            np.testing.assert_allclose(getattr(weekly, f)[i, :n], expected[f].to_numpy(), rtol=1e-12, err_msg=s)
    aapl = symbols.index("AAPL")
    days = weekly.dates[aapl, : weekly.lengths[aapl]]
    assert np.datetime64("2016-03-24") in days  # Good Friday: that week ended on Thursday
    assert days[-1] == np.datetime64(AS_OF)  # the current week as it stands (Monday to Thursday)


WEEKLY: dict[str, Callable[[pd.DataFrame], float]] = {
    "weekly(close)": lambda w: w.close.iloc[-1],
    "weekly(high)": lambda w: w.high.iloc[-1],
    "weekly(low)": lambda w: w.low.iloc[-1],
    "weekly(sma_20)": lambda w: w.close.rolling(20).mean().iloc[-1],
    "weekly(ago(close, 1))": lambda w: w.close.iloc[-2],
    "weekly(highest(high, 4))": lambda w: w.high.rolling(4).max().iloc[-1],
    "weekly(rsi_14)": lambda w: talib.RSI(w.close.to_numpy(), 14)[-1],
    "weekly(close > sma_20)": lambda w: (
        float(w.close.iloc[-1] > w.close.rolling(20).mean().iloc[-1]) if len(w) >= 20 else math.nan
    ),
}


@pytest.mark.parametrize("text", list(WEEKLY))
def test_weekly_values_match_pandas_weekly_resampling_on_every_symbol(
    text: str, source: Source, weeks: list[pd.DataFrame]
) -> None:
    expected = np.array([WEEKLY[text](w) for w in weeks])
    assert np.isfinite(expected).mean() > 0.9
    got = values(text, source, 1)[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-9, equal_nan=True)


def test_the_current_week_stands_as_of_midweek_even_when_later_bars_exist(
    real_bars: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    wednesday = date(2016, 6, 29)
    monday = np.datetime64("2016-06-27")
    config = ScanConfig(filter="weekly(close) > 0 and weekly(high) > 0", rank_by="weekly(volume)")
    out = scan_batch(real_instruments[:60], windowed(real_bars, wednesday), config, wednesday)
    assert len(out.rows) > 40
    for row in out.rows:
        b = real_bars[row["symbol"]]
        week = (b.dates >= monday) & (b.dates <= np.datetime64(wednesday))
        shown = row["screen"]["values"]
        assert shown["weekly(close)"] == b.close[week][-1] == row["close"]
        assert shown["weekly(high)"] == b.high[week].max()
        assert shown["weekly(volume)"] == b.volume[week].sum()
        assert b.dates[-1] > np.datetime64(wednesday)  # the week's Thursday and Friday exist


# --- Relative strength -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pandas_index(window: dict[str, Bars]) -> pd.Series:
    """The equal-weighted index computed by pandas: each day the mean return of the symbols with
    a bar that day over their previous bar, compounded from 1 on the first date."""
    closes = pd.DataFrame({s: pd.Series(b.close, index=pd.DatetimeIndex(b.dates)) for s, b in window.items()})
    returns = pd.DataFrame({s: closes[s].dropna().pct_change() for s in closes}).reindex(closes.index)
    level = (1 + returns.mean(axis=1, skipna=True).fillna(0.0)).cumprod()
    return level / level.iloc[0]


def test_the_equal_weighted_index_matches_pandas(benchmark: Benchmark, pandas_index: pd.Series) -> None:
    assert benchmark.dates.tolist() == [d.date() for d in pandas_index.index]
    np.testing.assert_allclose(benchmark.levels, pandas_index.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("k", [21, 63, 252])
def test_relative_strength_matches_a_pandas_equal_weighted_index_at_each_of_the_last_260_bars(
    k: int, source: Source, symbols: list[str], window: dict[str, Bars], pandas_index: pd.Series
) -> None:
    expected = []
    for s in symbols:
        close = pd.Series(window[s].close, index=pd.DatetimeIndex(window[s].dates))
        level = pandas_index.reindex(close.index)
        expected.append(((close / close.shift(k)) / (level / level.shift(k)) - 1).to_numpy())
    assert_series(f"rs_{k}d", source, right_tail(expected))


def test_relative_strength_against_a_symbol_is_undefined_on_a_date_the_benchmark_lacks(
    source: Source, symbols: list[str], window: dict[str, Bars]
) -> None:
    """A benchmark symbol (as TECHNIC_BENCHMARK) with one day missing, 21 bars before the last."""
    aapl = window["AAPL"]
    missing = aapl.dates[-22]
    keep = aapl.dates != missing
    against = Source(source.panel, benchmark=Benchmark(aapl.dates[keep], aapl.close[keep], "AAPL"))
    level = pd.Series(aapl.close[keep], index=pd.DatetimeIndex(aapl.dates[keep]))
    expected = []
    for s in symbols:
        close = pd.Series(window[s].close, index=pd.DatetimeIndex(window[s].dates))
        bench = level.reindex(close.index)
        expected.append(((close / close.shift(21)) / (bench / bench.shift(21)) - 1).to_numpy())
    expected_tail = right_tail(expected)
    got = values("rs_21d", against)
    np.testing.assert_allclose(got, expected_tail, rtol=1e-12, equal_nan=True)
    on_that_day = np.array([window[s].dates[-22] == missing for s in symbols])
    assert on_that_day.sum() > 400
    assert np.isnan(got[on_that_day, -1]).all()  # 21 bars before the last: no benchmark level
    assert np.isnan(got[on_that_day, -22]).all()  # on that day itself
    assert np.isfinite(got[on_that_day, -2]).all()


# --- rs_rating ---------------------------------------------------------------------------------


def test_rs_ratings_run_from_1_to_99_in_the_order_of_strength_and_ties_share_a_rating() -> None:
    strengths = {"A": -0.3, "B": 0.1, "C": 0.1, "D": 0.5, "E": 0.2, "F": -0.1, "G": 0.9}
    ratings = rs_ratings(strengths)
    assert ratings["A"] == 1 and ratings["G"] == 99
    assert ratings["B"] == ratings["C"]
    order = sorted(strengths, key=lambda s: strengths[s])
    in_order = [r for s in order if (r := ratings[s]) is not None]
    assert len(in_order) == len(order) and in_order == sorted(in_order)
    ranks = pd.Series(strengths).rank(method="average")
    assert ratings == {s: float(round(1 + 98 * (ranks[s] - 1) / 6)) for s in strengths}


def test_an_undefined_strength_has_no_rating_and_does_not_count_and_a_lone_symbol_rates_99() -> None:
    ratings = rs_ratings({"A": 0.1, "B": None, "C": math.nan, "D": 0.3, "E": 0.2})
    assert ratings == {"A": 1.0, "B": None, "C": None, "D": 99.0, "E": 50.0}
    assert rs_ratings({"A": 0.0}) == {"A": 99.0}
    assert rs_ratings({"A": None}) == {"A": None}
    assert rs_ratings({}) == {}
    tied = rs_ratings(dict.fromkeys("ABCD", 0.25))
    assert set(tied.values()) == {50.0}


def scan(
    instruments: Sequence[Instrument],
    bars: Mapping[str, Bars],
    config: ScanConfig,
    batch: int | None = None,
    benchmark: Benchmark | None = None,
    as_of: date = AS_OF,
) -> BatchOutput:
    """scan_batch over ``instruments`` in batches of ``batch`` (all at once by default), merged."""
    out = BatchOutput()
    size = batch or len(instruments)
    for start in range(0, len(instruments), size):
        part = scan_batch(instruments[start : start + size], bars, config, as_of, benchmark=benchmark)
        out.rows.extend(part.rows)
        out.skipped.extend(part.skipped)
        out.strengths.update(part.strengths)
    return out


def test_rs_rating_ranks_the_recorded_strengths_and_cross_section_rejects_exactly_the_rows_that_fail(
    window: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    config = ScanConfig(filter="rs_rating >= 80 and close > sma_50", rank_by="rs_rating")
    out = scan(real_instruments, window, config, batch=64)
    eligible = {r["symbol"] for r in out.rows} | {s.symbol for s in out.skipped if s.reason == "not_matched"}
    assert set(out.strengths) == eligible
    for symbol, strength in out.strengths.items():  # 0.4 ret_63d + 0.2 (ret_126d + ret_189d + ret_252d)
        c = window[symbol].close
        expected = sum(w * (c[-1] / c[-1 - k] - 1) for k, w in ((63, 0.4), (126, 0.2), (189, 0.2), (252, 0.2)))
        assert strength == pytest.approx(expected, rel=1e-12), symbol
    defined = pd.Series({s: v for s, v in out.strengths.items() if v is not None})
    ranks = defined.rank(method="average")
    rating = {s: float(round(1 + 98 * (ranks[s] - 1) / (len(defined) - 1))) for s in defined.index}
    assert set(rating.values()) <= set(map(float, range(1, 100))) and min(rating.values()) == 1

    screen = config.screen
    assert screen is not None
    kept, rejected = cross_section(screen, out.rows, out.strengths)
    assert {r["symbol"] for r in kept} == {r["symbol"] for r in out.rows if rating[r["symbol"]] >= 80}
    assert {r.symbol for r in rejected} == {r["symbol"] for r in out.rows if rating[r["symbol"]] < 80}
    assert len(kept) > 20 and len(rejected) > 100
    for row in kept:
        assert row["screen"]["values"]["rs_rating"] == rating[row["symbol"]]
        assert row["screen"]["values"]["close"] == row["close"]
    for r in rejected:
        assert r.detail == f"'rs_rating >= 80' is false (rs_rating = {rating[r.symbol]:.6g})"
    assert all("rs_rating" not in r["screen"]["values"] for r in out.rows)  # the rows were not modified


def test_a_final_clause_mixing_rs_rating_with_history_and_weekly_values_uses_the_recorded_values(
    window: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    config = ScanConfig(
        filter="rs_rating >= 70 or weekly(close) > weekly(sma_20) and highest(high, 5) > close * 1.03",
        rank_by="rs_rating - rsi_14",
        order="asc",
    )
    out = scan(real_instruments, window, config, batch=100)
    assert not any(s.reason == "not_matched" for s in out.skipped)  # nothing is known before finalization
    screen = config.screen
    assert screen is not None and screen.final_clauses() and not screen.batch_clauses()
    kept, rejected = cross_section(screen, out.rows, out.strengths)
    rating = {s: r for s, r in rs_ratings(out.strengths).items() if r is not None}
    assert len(rating) == len(out.strengths)

    def passes(row: dict[str, Any]) -> bool:
        v = row["screen"]["values"]
        weekly_up = v["weekly(close)"] > v["weekly(sma_20)"]
        return rating[row["symbol"]] >= 70 or (weekly_up and v["highest(high, 5)"] > row["close"] * 1.03)

    assert {r["symbol"] for r in kept} == {r["symbol"] for r in out.rows if passes(r)}
    assert {r.symbol for r in rejected} == {r["symbol"] for r in out.rows if not passes(r)}
    assert len(kept) > 100 and len(rejected) > 50
    for row in kept:
        shown = row["screen"]["values"]
        assert shown["rs_rating"] == rating[row["symbol"]]
        assert shown["rs_rating - rsi_14"] == pytest.approx(rating[row["symbol"]] - row["rsi_14"], abs=1e-12)
    assert all(r.detail.startswith(f"'{config.filter}' is false (rs_rating = ") for r in rejected)


def test_a_symbol_whose_rs_rating_is_undefined_is_rejected_saying_undefined(
    window: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    config = ScanConfig(filter="close > 0 and rs_rating >= 1")
    out = scan(real_instruments[:40], window, config)
    screen = config.screen
    assert screen is not None
    strengths = {**out.strengths, out.rows[0]["symbol"]: None}
    kept, rejected = cross_section(screen, out.rows, strengths)
    assert [(r.symbol, r.detail) for r in rejected] == [
        (out.rows[0]["symbol"], "'rs_rating >= 1' is undefined (rs_rating = undefined)")
    ]
    assert len(kept) == len(out.rows) - 1


# --- Undefined values --------------------------------------------------------------------------


def test_a_window_longer_than_the_history_is_undefined_and_one_as_long_is_defined(
    source: Source, window: dict[str, Bars], symbols: list[str]
) -> None:
    full = np.array([len(window[s]) == LOOKBACK for s in symbols])
    assert full.sum() > 400
    for defined, undefined in [
        ("highest(high, 500)", "highest(high, 501)"),
        ("average(close, 500)", "average(close, 501)"),
        ("ago(close, 499)", "ago(close, 500)"),
        ("change(close, 499)", "change(close, 500)"),
        ("count(close > 0, 500)", "count(close > 0, 501)"),
        ("crossed_above(close, 0, 499)", "crossed_above(close, 0, 500)"),
    ]:
        got, missing = values(defined, source, 1)[:, 0], values(undefined, source, 1)[:, 0]
        assert np.isfinite(got[full]).all(), defined
        assert np.isnan(got[~full]).all(), defined
        assert np.isnan(missing).all(), undefined
    highest = values("highest(high, 500)", source, 1)[full, 0]
    np.testing.assert_array_equal(highest, [window[s].high.max() for s, f in zip(symbols, full, strict=True) if f])


def test_and_or_and_not_are_three_valued(source: Source) -> None:
    undefined, true, false = "ago(nr7, 600)", "close > 0", "close < 0"
    table = {
        f"{undefined} and {false}": 0.0,
        f"{false} and {undefined}": 0.0,
        f"{undefined} and {true}": math.nan,
        f"{undefined} or {true}": 1.0,
        f"{true} or {undefined}": 1.0,
        f"{undefined} or {false}": math.nan,
        f"not {undefined}": math.nan,
        f"not ({undefined} and {false})": 1.0,
        f"{undefined} == {undefined}": math.nan,
        f"{undefined} != true": math.nan,
        f"({undefined} or {true}) and ({undefined} or {false})": math.nan,
        f"ago(close, 600) > 0 or {true}": 1.0,
        "ago(close, 600) + 1 > 0": math.nan,
        "1 / 0 > 0": math.nan,
        "0 / 0 == 0 / 0": math.nan,
    }
    for text, expected in table.items():
        got = values(text, source, 1)[:, 0]
        np.testing.assert_array_equal(got, np.full(got.shape, expected), err_msg=text)


def test_a_symbol_whose_filter_is_undefined_is_skipped_as_not_matched_saying_undefined(
    window: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    plain = scan(real_instruments, window, ScanConfig())
    undefined = scan(real_instruments, window, ScanConfig(filter="ago(close, 600) > 0"))
    assert undefined.rows == []
    matched = {s.symbol: s.detail for s in undefined.skipped if s.reason == "not_matched"}
    assert set(matched) == {r["symbol"] for r in plain.rows}
    rows = {r["symbol"]: r for r in plain.rows}
    for symbol, detail in matched.items():
        close = rows[symbol]["close"]
        assert detail == f"'ago(close, 600) > 0' is undefined (ago(close, 600) = undefined, close = {close:.6g})"
    either = scan(real_instruments, window, ScanConfig(filter="ago(close, 600) > 0 or close > 0"))
    assert [r["symbol"] for r in either.rows] == [r["symbol"] for r in plain.rows]
    both = scan(real_instruments, window, ScanConfig(filter="close > 0 and ago(high, 600) > 0"))
    assert both.rows == []
    assert all(
        s.detail.startswith("'ago(high, 600) > 0' is undefined") for s in both.skipped if s.reason == "not_matched"
    )


# --- No look-ahead -----------------------------------------------------------------------------

LOOK_AHEAD_PROBES = [
    "close",
    "highest(high, 20)",
    "crossed_above(close, sma_20, 5)",
    "count(nr7, 30)",
    "rs_63d",
    "rs_252d",
    "tech_rating",
    "trend_score",
    "new_52w_high",
    "pct_from_52w_high",
    "macd_hist",
    "adx_14",
    "obv",
    "vol_20d",
    "change(close, 63)",
    "breakout_20d",
    "average(volume_ratio, 10)",
    "gap_up",
]


@pytest.mark.parametrize("m", [1, 5, 60])
def test_a_value_at_an_earlier_bar_is_the_value_computed_with_the_later_bars_removed(
    m: int, source: Source, window: dict[str, Bars], symbols: list[str]
) -> None:
    shorter = {s: cut(window[s], m) for s in symbols if len(window[s]) > m}
    rows = [symbols.index(s) for s in shorter]
    earlier = Source(build_panel([shorter[s] for s in shorter]), benchmark=benchmark_of(shorter))
    for text in LOOK_AHEAD_PROBES:
        now = values(text, earlier, 1)[:, 0]
        back = values(f"ago({text}, {m})", source, 1)[rows, 0]
        assert np.isfinite(now).mean() > 0.5, text
        np.testing.assert_allclose(back, now, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=text)


FILTER = (
    "weekly(close) > weekly(sma_20) and highest(high, 20) > ago(close, 3) * 1.02 and count(close > open, 10) >= 5"
    " and rs_63d > 0 and (not gap_down or crossed_above(close, sma_50, 10))"
)
RANK_BY = "change(close, 63) + weekly(ret_5d)"


def test_a_scan_at_as_of_is_the_same_with_and_without_the_bars_after_it(
    real_bars: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    wednesday = date(2016, 6, 29)
    config = ScanConfig(filter=FILTER, rank_by=RANK_BY)
    with_later = windowed(real_bars, wednesday)
    without = windowed({s: until(b, wednesday) for s, b in real_bars.items()}, wednesday)
    a = scan(real_instruments, with_later, config, benchmark=benchmark_of(with_later), as_of=wednesday)
    b = scan(real_instruments, without, config, benchmark=benchmark_of(without), as_of=wednesday)
    assert a.rows == b.rows
    assert a.skipped == b.skipped
    assert 50 < len(a.rows) < 450
    for row in a.rows:
        assert row["as_of"] <= wednesday.isoformat()


# --- Batch-size invariance ---------------------------------------------------------------------


def test_scanning_all_at_once_in_batches_of_7_or_one_by_one_gives_identical_rows_and_skips(
    window: dict[str, Bars], real_instruments: list[Instrument], benchmark: Benchmark
) -> None:
    config = ScanConfig(filter=f"({FILTER}) and rs_rating >= 0", rank_by=RANK_BY)
    runs = [scan(real_instruments, window, config, batch, benchmark) for batch in (None, 7, 1)]
    by_symbol = [sorted(r.skipped, key=lambda s: s.symbol) for r in runs]
    assert runs[0].rows == runs[1].rows == runs[2].rows
    assert by_symbol[0] == by_symbol[1] == by_symbol[2]
    assert runs[0].strengths == runs[1].strengths == runs[2].strengths
    assert len(runs[0].rows) > 50
    assert sum(s.reason == "not_matched" for s in runs[0].skipped) > 50
    shown = runs[0].rows[0]["screen"]["values"]
    assert {"weekly(close)", "highest(high, 20)", "rs_63d", RANK_BY} <= set(shown)


# --- The rows' own values, accounting ----------------------------------------------------------

ROW_NUMBERS = [f for f in INDICATOR_FIELDS if f != "obv"] + ["close", "tech_rating"]


def test_a_plain_comparison_sees_exactly_the_rows_values(
    window: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    text = " and ".join(f"{f} == {f}" for f in ROW_NUMBERS) + " and trend_score >= 0 and obv == obv"
    out = scan(real_instruments, window, ScanConfig(filter=text))
    assert len(out.rows) > 400
    for row in out.rows:
        shown = row["screen"]["values"]
        for f in (*ROW_NUMBERS, "obv"):
            assert shown[f] == row[f], (row["symbol"], f)
        assert shown["trend_score"] == row["subscores"]["trend"]
    row = out.rows[len(out.rows) // 2]
    rsi = row["rsi_14"]
    at = scan(real_instruments, window, ScanConfig(filter=f"rsi_14 >= {rsi!r}"))
    above = scan(real_instruments, window, ScanConfig(filter=f"rsi_14 > {rsi!r}"))
    assert row["symbol"] in {r["symbol"] for r in at.rows}
    assert row["symbol"] not in {r["symbol"] for r in above.rows}
    assert {r["symbol"] for r in at.rows} == {r["symbol"] for r in out.rows if r["rsi_14"] >= rsi}


def test_rows_and_skips_account_for_the_universe_and_a_rejection_names_its_first_failing_clause(
    window: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    clauses = ["close > 20", "rsi_14 > 45", "vol_20d < 0.3", "(nr7 or not nr7)"]
    out = scan(real_instruments, window, ScanConfig(filter=" and ".join(clauses)))
    names = [r["symbol"] for r in out.rows] + [s.symbol for s in out.skipped]
    assert sorted(names) == sorted(i.symbol for i in real_instruments)
    plain = {r["symbol"]: r for r in scan(real_instruments, window, ScanConfig()).rows}
    tests: list[Callable[[dict[str, Any]], bool]] = [
        lambda r: r["close"] > 20,
        lambda r: r["rsi_14"] > 45,
        lambda r: r["vol_20d"] < 0.3,
    ]
    not_matched = [s for s in out.skipped if s.reason == "not_matched"]
    assert {s.symbol for s in not_matched} | {r["symbol"] for r in out.rows} == set(plain)
    seen = set()
    for skip in not_matched:
        row = plain[skip.symbol]
        first = next(i for i, test in enumerate(tests) if not test(row))
        seen.add(first)
        assert skip.detail.startswith(f"'{clauses[first]}' is false ("), skip.detail
    assert seen == {0, 1, 2}
    for row in out.rows:
        assert all(test(plain[row["symbol"]]) for test in tests)
