"""The demo provider: a deterministic, lazily generated synthetic market."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from datetime import date

import numpy as np
import pytest

from engine.panel import build_panel
from engine.quality import validate_panel
from engine.types import GICS_SECTORS, Bars
from market.providers import DEMO_DEFECTS, DemoProvider, MarketDataProvider

LAST = date(2024, 12, 31)
FIELDS = ("dates", "open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def demo() -> DemoProvider:
    return DemoProvider()


@pytest.fixture(scope="module")
def history(demo: DemoProvider) -> dict[str, Bars]:
    """Every default demo symbol's full history."""
    return demo.bars([i.symbol for i in demo.instruments()], LAST, 10_000)


@pytest.fixture(scope="module")
def full_returns(demo: DemoProvider, history: dict[str, Bars]) -> tuple[np.ndarray, np.ndarray]:
    """(S, T-1) daily log returns of the symbols with every bar, and their sectors."""
    sector = {i.symbol: i.sector for i in demo.instruments()}
    full = [s for s, b in history.items() if len(b) == len(demo.calendar())]
    returns = np.array([np.diff(np.log(history[s].close)) for s in full])
    return returns, np.array([sector[s] for s in full])


def same_bars(a: Bars, b: Bars) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def test_the_demo_provider_is_labelled_synthetic_and_fits_the_interface(demo: DemoProvider) -> None:
    assert demo.name == "demo"
    assert demo.synthetic is True
    assert isinstance(demo, MarketDataProvider)


def test_the_same_seed_gives_bit_identical_bars_in_another_instance(history: dict[str, Bars]) -> None:
    other = DemoProvider()
    symbols = sorted(history)[::25]
    again = other.bars(symbols, LAST, 10_000)
    assert all(same_bars(history[s], again[s]) for s in symbols)


def test_a_symbol_alone_is_bit_identical_to_the_same_symbol_in_a_large_request(
    demo: DemoProvider, history: dict[str, Bars]
) -> None:
    for symbol in [*sorted(history)[::50], *demo.defects()]:
        alone = DemoProvider().bars([symbol], LAST, 10_000)[symbol]
        assert same_bars(alone, history[symbol]), symbol


def test_another_seed_gives_another_market(demo: DemoProvider) -> None:
    other = DemoProvider(seed=8)
    assert [i.symbol for i in other.instruments()] != [i.symbol for i in demo.instruments()]
    symbol = demo.instruments()[0].symbol
    other_bars = DemoProvider(seed=8).bars([other.instruments()[0].symbol], LAST, 100)
    assert not np.array_equal(next(iter(other_bars.values())).close, demo.bars([symbol], LAST, 100)[symbol].close)


def test_the_default_market_has_500_symbols_over_all_11_sectors_weighted_like_the_sp500(demo: DemoProvider) -> None:
    instruments = demo.instruments()
    counts = Counter(i.sector for i in instruments)
    assert len(instruments) == 500
    assert set(counts) == set(GICS_SECTORS)
    assert counts.most_common(1)[0][0] == "Consumer Discretionary"
    assert 0.14 <= counts["Consumer Discretionary"] / 500 <= 0.20
    assert 0.11 <= counts["Information Technology"] / 500 <= 0.17
    assert 0.03 <= counts["Utilities"] / 500 <= 0.07
    assert counts["Telecommunication Services"] >= 3


def test_tickers_are_unique_sorted_short_capitals_and_names_say_synthetic(demo: DemoProvider) -> None:
    symbols = [i.symbol for i in demo.instruments()]
    assert symbols == sorted(symbols)
    assert len(set(symbols)) == len(symbols)
    assert all(3 <= len(s) <= 4 and s.isalpha() and s.isupper() for s in symbols)
    assert all(i.name.startswith("Synthetic ") and i.sector in i.name for i in demo.instruments())
    assert len({i.name for i in demo.instruments()}) == len(symbols)


def test_the_calendar_is_every_weekday_from_2018_01_02_to_2024_12_31(demo: DemoProvider) -> None:
    calendar = demo.calendar()
    assert calendar.dtype == np.dtype("datetime64[D]")
    assert demo.date_range() == (date(2018, 1, 2), date(2024, 12, 31))
    assert len(calendar) == 1826
    assert np.is_busday(calendar).all()
    assert (np.diff(calendar).astype(int) > 0).all()


def test_ohlc_is_consistent_and_positive_except_at_the_injected_defects(
    demo: DemoProvider, history: dict[str, Bars]
) -> None:
    broken = set()
    for symbol, b in history.items():
        ok = (b.high >= np.maximum(b.open, b.close)) & (b.low <= np.minimum(b.open, b.close)) & (b.low > 0)
        ok &= (b.volume > 0) & (b.volume == np.round(b.volume))
        broken |= {(symbol, str(d)) for d in b.dates[~ok]}
    expected = {(s, str(demo.calendar()[d.bar])) for s, d in demo.defects().items() if d.kind == "low_above_open"}
    assert broken == expected
    assert len(expected) == 1


def test_each_documented_defect_is_present_where_the_constant_says(
    demo: DemoProvider, history: dict[str, Bars]
) -> None:
    calendar = demo.calendar()
    defects = demo.defects()
    assert sorted(d.kind for d in defects.values()) == sorted(d.kind for d in DEMO_DEFECTS)
    assert {demo.symbol_at(d.index) for d in DEMO_DEFECTS} == set(defects)
    for symbol, defect in defects.items():
        b = history[symbol]
        day = calendar[defect.bar]
        if defect.kind == "missing_days":
            gone = calendar[defect.bar : defect.bar + defect.length]
            assert len(b) == len(calendar) - defect.length
            assert not np.isin(gone, b.dates).any()
            continue
        t = int(np.searchsorted(b.dates, day))
        if defect.kind == "one_bar_spike":
            assert b.close[t] / np.mean([b.close[t - 1], b.close[t + 1]]) > 1.2
            assert abs(b.close[t + 1] / b.close[t - 1] - 1) < 0.1
        else:
            assert b.low[t] > b.open[t]


def test_the_engine_validation_finds_every_injected_defect(demo: DemoProvider) -> None:
    symbols = list(demo.defects())
    bars = demo.bars(symbols, LAST, 300)
    report = validate_panel(build_panel([bars[s] for s in symbols]), demo.calendar())
    found = {s: {f.split(":")[0] for f in flags} for s, flags in zip(symbols, report.flags, strict=True)}
    wanted = {"one_bar_spike": "one_bar_spike", "low_above_open": "ohlc_inconsistent", "missing_days": "missing_days"}
    for symbol, defect in demo.defects().items():
        assert wanted[defect.kind] in found[symbol], (symbol, defect)


def test_absolute_returns_cluster_like_real_volatility(full_returns: tuple[np.ndarray, np.ndarray]) -> None:
    returns, _ = full_returns
    a = np.abs(returns - returns.mean(axis=1, keepdims=True))
    a -= a.mean(axis=1, keepdims=True)
    for lag in (1, 5, 20):
        acf = (a[:, lag:] * a[:, :-lag]).mean(axis=1) / (a * a).mean(axis=1)
        assert acf.mean() > 0.05, lag
    shuffled = np.random.default_rng(0).permuted(a, axis=1)
    assert abs(((shuffled[:, 1:] * shuffled[:, :-1]).mean(axis=1) / (a * a).mean(axis=1)).mean()) < 0.01


def test_returns_have_fat_tails(full_returns: tuple[np.ndarray, np.ndarray]) -> None:
    returns, _ = full_returns
    z = (returns - returns.mean(axis=1, keepdims=True)) / returns.std(axis=1, keepdims=True)
    excess_kurtosis = (z**4).mean(axis=1) - 3
    assert np.median(excess_kurtosis) > 2


def test_returns_correlate_more_within_a_sector_than_across_sectors(
    full_returns: tuple[np.ndarray, np.ndarray],
) -> None:
    returns, sectors = full_returns
    corr = np.corrcoef(returns)
    same = sectors[:, None] == sectors[None, :]
    off_diagonal = ~np.eye(len(sectors), dtype=bool)
    within, across = corr[same & off_diagonal].mean(), corr[~same].mean()
    assert across > 0.1  # the market factor
    assert within > across + 0.05


def test_utilities_are_calmer_than_energy_and_information_technology(
    full_returns: tuple[np.ndarray, np.ndarray],
) -> None:
    returns, sectors = full_returns
    vol = returns.std(axis=1) * np.sqrt(252)
    median = {s: np.median(vol[sectors == s]) for s in GICS_SECTORS}
    assert median["Utilities"] < 0.8 * median["Energy"]
    assert median["Utilities"] < 0.8 * median["Information Technology"]
    assert 0.15 < np.median(vol) < 0.45


def test_prices_and_dollar_volumes_span_realistic_ranges(history: dict[str, Bars]) -> None:
    last_close = np.array([b.close[-1] for b in history.values()])
    dollar_volume = np.array([np.mean(b.close[-20:] * b.volume[-20:]) for b in history.values()])
    assert 20 < np.median(last_close) < 150
    assert np.mean((last_close >= 5) & (last_close <= 600)) > 0.95
    every_close = np.concatenate([b.close for b in history.values()])
    assert np.sum(every_close < 5) >= 1 and np.mean(every_close < 5) < 0.02
    assert 1 <= np.sum(dollar_volume < 1e6) <= 15
    assert dollar_volume.max() > 1e9
    assert dollar_volume.min() > 2e5


def test_volume_is_higher_on_big_move_days(history: dict[str, Bars]) -> None:
    ratios = []
    for b in list(history.values())[:100]:
        move = np.abs(np.diff(np.log(b.close)))
        volume = b.volume[1:]
        big = move > np.quantile(move, 0.9)
        ratios.append(np.median(volume[big]) / np.median(volume[~big]))
    assert np.median(ratios) > 1.2


def test_bars_stop_at_as_of_and_keep_the_last_lookback_bars(demo: DemoProvider, history: dict[str, Bars]) -> None:
    symbol = sorted(history)[10]
    saturday = date(2021, 6, 12)
    window = demo.bars([symbol], saturday, 60)[symbol]
    full = history[symbol]
    end = int(np.searchsorted(full.dates, np.datetime64(saturday), side="right"))
    assert len(window) == 60
    assert window.dates[-1] == np.datetime64("2021-06-11")
    assert same_bars(window, Bars(*(getattr(full, f)[end - 60 : end] for f in FIELDS)))


def test_unknown_symbols_and_dates_before_the_data_are_absent(demo: DemoProvider) -> None:
    symbol = demo.instruments()[0].symbol
    assert demo.bars([symbol, "NOT-A-SYMBOL"], LAST, 5).keys() == {symbol}
    assert demo.bars([symbol], date(2017, 12, 29), 5) == {}


def test_a_lookback_below_one_bar_is_rejected(demo: DemoProvider) -> None:
    with pytest.raises(ValueError, match="lookback"):
        demo.bars([demo.instruments()[0].symbol], LAST, 0)


def test_a_market_smaller_than_one_symbol_per_sector_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        DemoProvider(n_symbols=10)


def test_a_5000_symbol_market_generates_only_the_requested_chunk() -> None:
    tracemalloc.start()
    try:
        big = DemoProvider(n_symbols=5000)
        _, construction_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        chunk = [i.symbol for i in big.instruments()[:250]]
        bars = big.bars(chunk, LAST, 300)
        _, chunk_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(big.instruments()) == 5000
    assert set(bars) == set(chunk) and all(len(b) == 300 for b in bars.values())
    assert construction_peak < 20e6  # no bars generated up front
    assert chunk_peak < 150e6  # all 5,000 histories would need over 500 MB
