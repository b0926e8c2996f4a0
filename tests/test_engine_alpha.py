"""The alpha model without a database: no look-ahead, hand-checked maths, reproducible figures."""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from engine.alpha import (
    FEATURE_WINDOW,
    AlphaFit,
    AlphaSettings,
    TrainedAlpha,
    build_data,
    features_at_last,
    ranking_score,
    train,
)
from engine.alpha.dataset import MIN_CROSS_SECTION, _excess_returns
from engine.alpha.evaluation import daily_figures, decile_spread, newey_west_t, rank_ic
from engine.alpha.features import feature_series
from engine.alpha.model import HORIZONS, _ridge, model_version
from engine.config import ScanConfig
from engine.panel import build_panel
from engine.scan import rank_rows, scan_batch
from engine.types import Bars, Instrument

CUTOFF = date(2016, 6, 30)
LAST_DAY = date(2018, 2, 7)


def until(bars: dict[str, Bars], as_of: date, lookback: int = 500) -> dict[str, Bars]:
    out = {s: b.window(as_of, lookback) for s, b in bars.items()}
    return {s: b for s, b in out.items() if len(b)}


def altered_after(bars: dict[str, Bars], cutoff: date, how: str) -> dict[str, Bars]:
    """Every symbol's bars after ``cutoff`` shuffled, rescaled at random, or deleted."""
    rng = np.random.default_rng(11)
    out = {}
    for symbol, b in bars.items():
        keep = int(np.searchsorted(b.dates, np.datetime64(cutoff, "D"), side="right"))
        n = len(b) - keep
        if how == "deleted":
            out[symbol] = b.window(cutoff, len(b))
            continue
        columns = [b.open.copy(), b.high.copy(), b.low.copy(), b.close.copy(), b.volume.copy()]
        if how == "shuffled":
            order = keep + rng.permutation(n)
            for c in columns:
                c[keep:] = c[order]
        else:
            factor = rng.uniform(0.3, 3.0, n)
            for c in columns:
                c[keep:] *= factor
        out[symbol] = Bars(b.dates, *columns)
    return out


@pytest.fixture(scope="module")
def sectors(real_instruments: list[Instrument]) -> dict[str, str]:
    return {i.symbol: i.sector for i in real_instruments}


@pytest.fixture(scope="module")
def subset(real_bars: dict[str, Bars], sectors: dict[str, str]) -> tuple[dict[str, Bars], dict[str, str]]:
    """Every third real symbol (168, all sectors): the look-ahead tests refit several times."""
    symbols = sorted(sectors)[::3]
    return {s: real_bars[s] for s in symbols}, {s: sectors[s] for s in symbols}


@pytest.fixture(scope="module")
def trained(subset: tuple[dict[str, Bars], dict[str, str]]) -> TrainedAlpha:
    bars, sectors = subset
    return train(bars, sectors, CUTOFF)


# --- No look-ahead ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["shuffled", "rescaled", "deleted"])
def test_bars_after_the_cutoff_change_neither_the_model_nor_its_evaluation_nor_the_scan(
    how: str, subset: tuple[dict[str, Bars], dict[str, str]], trained: TrainedAlpha
) -> None:
    bars, sectors = subset
    altered = altered_after(bars, CUTOFF, how)
    assert any(len(altered[s]) != len(bars[s]) or not np.array_equal(altered[s].close, bars[s].close) for s in bars)
    # a symbol listed only after the cut-off is not seen either
    late = bars["AAPL"]
    altered["LATE"] = Bars(*(x[-100:] for x in (late.dates, late.open, late.high, late.low, late.close, late.volume)))
    again = train(altered, {**sectors, "LATE": "Energy"}, CUTOFF)

    assert again.fit.to_dict() == trained.fit.to_dict()
    assert again.version == trained.version
    assert again.evaluation == trained.evaluation
    instruments = [Instrument(s, s, sectors[s]) for s in sorted(sectors)[:40]]
    config = ScanConfig(min_price=0, min_dollar_volume=0)
    before = scan_batch(instruments, until(bars, CUTOFF), config, CUTOFF, alpha=trained.fit).rows
    after = scan_batch(instruments, until(altered, CUTOFF), config, CUTOFF, alpha=again.fit).rows
    assert after == before and all(r["alpha_5d"] is not None for r in before)


def test_features_of_a_bar_read_no_later_bar_and_equal_what_a_scan_computes_from_its_window(
    real_bars: dict[str, Bars],
) -> None:
    symbols = sorted(real_bars)[:30]
    panel = build_panel([real_bars[s] for s in symbols])
    series = feature_series(panel.close, panel.high, panel.low, panel.volume)
    j = 700
    spoiled = {name: getattr(panel, name).copy() for name in ("close", "high", "low", "volume")}
    for arr in spoiled.values():
        arr[:, j + 1 :] *= 7.0
    again = feature_series(spoiled["close"], spoiled["high"], spoiled["low"], spoiled["volume"])
    np.testing.assert_array_equal(again[:, : j + 1], series[:, : j + 1])
    assert not np.array_equal(again[:, j + 1 :], series[:, j + 1 :], equal_nan=True)

    windows = [real_bars[s].window(real_bars[s].dates[j].astype(object), FEATURE_WINDOW) for s in symbols]
    at_scan = features_at_last(build_panel(windows))
    assert np.isfinite(at_scan).all()
    np.testing.assert_allclose(at_scan, series[:, j, :], rtol=1e-10, atol=1e-13)


def test_each_walk_forward_figure_is_the_same_whether_the_data_ends_right_after_it_or_years_later(
    subset: tuple[dict[str, Bars], dict[str, str]],
) -> None:
    bars, sectors = subset
    settings = AlphaSettings()
    full = daily_figures(build_data(bars, sectors, LAST_DAY, settings.horizons), settings)
    short_data = build_data(bars, sectors, date(2016, 12, 30), settings.horizons)
    short = daily_figures(short_data, settings)

    assert short.cutoffs == full.cutoffs[: len(short.cutoffs)]
    for h in settings.horizons:
        assert len(short.days[h]) > 300
        assert short.days[h] == full.days[h][: len(short.days[h])]
        last_scored = short.days[h][-1][0]
        assert last_scored + h == len(short_data.calendar) - 1  # the last date whose return is known


# --- The maths, on cases small enough to check by hand -----------------------------------------


def test_rank_ic_is_the_spearman_correlation() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert rank_ic(x, x * 10) == pytest.approx(1.0)
    assert rank_ic(x, -x) == pytest.approx(-1.0)
    # ranks (1,2,3,4,5) against (2,1,4,3,5): 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*4/120 = 0.8
    assert rank_ic(x, np.array([0.2, 0.1, 0.4, 0.3, 0.5])) == pytest.approx(0.8)
    ties = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 4.0])
    other = np.array([0.5, 0.1, 0.3, 0.9, 0.2, 0.8])
    assert rank_ic(ties, other) == pytest.approx(spearmanr(ties, other).statistic)
    assert math.isnan(rank_ic(np.ones(5), x))


def test_decile_spread_is_the_top_tenth_minus_the_bottom_tenth() -> None:
    predicted = np.arange(20.0)  # deciles of 2: {18, 19} on top, {0, 1} at the bottom
    realised = np.zeros(20)
    realised[[18, 19]] = [0.03, 0.05]
    realised[[0, 1]] = [-0.01, 0.01]
    assert decile_spread(predicted, realised) == pytest.approx(0.04)
    assert decile_spread(predicted[::-1].copy(), realised) == pytest.approx(-0.04)


def test_newey_west_t_statistic_matches_the_hand_computation() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; gamma0 = 5/4; with no lag t = 2.5 / sqrt(1.25 / 4)
    assert newey_west_t(x, 0) == pytest.approx(2.5 / math.sqrt(1.25 / 4))
    # gamma1 = (0.75 - 0.25 + 0.75) / 4 = 0.3125, Bartlett weight 1/2: var = 1.25 + 0.3125
    assert newey_west_t(x, 1) == pytest.approx(4.0)


def test_ridge_recovers_an_exact_line_and_shrinks_it_when_penalised() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = 1.0 + 2.0 * x[:, 0]
    beta, intercept = _ridge(x, y, 0.0)
    assert beta[0] == pytest.approx(2.0) and intercept == pytest.approx(1.0)
    # var(x) = 1.25, cov(x, y) = 2.5: slope 2.5 / (1.25 + lambda)
    beta, intercept = _ridge(x, y, 1.25)
    assert beta[0] == pytest.approx(1.0) and intercept == pytest.approx(4.0 - 1.0 * 1.5)


def test_excess_returns_subtract_the_universe_mean_and_need_a_full_cross_section() -> None:
    n = MIN_CROSS_SECTION + 1
    close = np.ones((4, n))
    close[1] = 1.0 + np.arange(n) / 100  # date 0 -> 1: returns 0.00 .. 0.20, mean 0.10
    close[2, 0] = np.nan  # date 1 -> 2: symbol 0 has no return, the other 20 make the mean
    close[3, :2] = np.nan  # date 2 -> 3: 19 returns, too few for a universe mean
    excess = _excess_returns(close, 1)
    np.testing.assert_allclose(excess[0], np.arange(n) / 100 - 0.10, atol=1e-15)
    back = 1.0 / close[1, 1:] - 1.0
    assert math.isnan(excess[1, 0])
    np.testing.assert_allclose(excess[1, 1:], back - back.mean(), atol=1e-15)
    assert np.isnan(excess[2]).all() and np.isnan(excess[3]).all()  # too few; no later close


def test_scores_map_the_reference_distribution_onto_minus_a_half_to_a_half(trained: TrainedAlpha) -> None:
    fit = trained.fit
    q = fit.quantiles
    rows = np.stack([q[:, 0], q[:, 50], q[:, -1], q[:, -1] + 1.0, q[:, 0] - 1.0])
    x, usable = fit.design(rows, ["Energy", "Energy", "Energy", "Energy", "Nowhere"])
    k = len(fit.features)
    np.testing.assert_allclose(x[:, :k], [[-0.5] * k, [0.0] * k, [0.5] * k, [0.5] * k, [-0.5] * k], atol=1e-12)
    assert x[0, k + fit.sectors.index("Energy")] == 1.0 and x[0, k:].sum() == 1.0
    assert usable.tolist() == [True, True, True, True, False]


def test_a_model_round_trips_through_json_bit_for_bit(trained: TrainedAlpha) -> None:
    fit = trained.fit
    again = AlphaFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert again.to_dict() == fit.to_dict()
    features = np.random.default_rng(3).normal(0, 0.1, (50, len(fit.features)))
    sectors = [fit.sectors[i % len(fit.sectors)] for i in range(50)]
    a, b = fit.predict(features, sectors), again.predict(features, sectors)
    for h in fit.horizons:
        np.testing.assert_array_equal(a[h], b[h])


def test_the_version_names_the_data_the_cutoff_and_the_code_not_the_round_off(
    subset: tuple[dict[str, Bars], dict[str, str]], trained: TrainedAlpha
) -> None:
    bars, sectors = subset
    data = build_data(bars, sectors, CUTOFF, HORIZONS)
    assert model_version(data, AlphaSettings()) == trained.version and trained.version.startswith("20160630-")
    # what another CPU's floating point may do to generated bars: the last bits differ
    noisy = {
        s: Bars(b.dates, *(np.nextafter(x, np.inf) for x in (b.open, b.high, b.low, b.close, b.volume)))
        for s, b in bars.items()
    }
    assert model_version(build_data(noisy, sectors, CUTOFF, HORIZONS), AlphaSettings()) == trained.version
    changed = dict(bars)
    b = bars["AAPL"]
    close = b.close.copy()
    close[100] *= 1.01
    changed["AAPL"] = Bars(b.dates, b.open, b.high, b.low, close, b.volume)
    assert model_version(build_data(changed, sectors, CUTOFF, HORIZONS), AlphaSettings()) != trained.version
    assert model_version(data, AlphaSettings(ridge_lambda=0.1)) != trained.version
    earlier = build_data(bars, sectors, date(2016, 6, 29), HORIZONS)
    assert model_version(earlier, AlphaSettings()).startswith("20160629-")


def test_the_model_reads_history_only_up_to_its_cutoff_minus_the_horizon(trained: TrainedAlpha) -> None:
    fit = trained.fit
    assert fit.data_cutoff == CUTOFF
    assert fit.train_end == date(2016, 6, 16)  # ten market dates before 2016-06-30
    assert fit.n_samples[5] > 50_000 and fit.n_dates > 500


# --- Reproducibility on the real data ----------------------------------------------------------


def test_training_and_evaluation_on_the_real_data_are_reproducible_bit_for_bit(
    real_bars: dict[str, Bars], sectors: dict[str, str]
) -> None:
    cutoff = date(2016, 12, 30)
    first = train(real_bars, sectors, cutoff)
    backwards = dict(reversed(list(real_bars.items())))
    second = train(backwards, dict(reversed(list(sectors.items()))), cutoff)

    assert json.dumps(second.evaluation, sort_keys=True) == json.dumps(first.evaluation, sort_keys=True)
    assert second.fit.to_dict() == first.fit.to_dict()
    evaluation = first.evaluation
    assert evaluation["refits"] == 8 and evaluation["first_cutoff"] == "2015-02-23"
    for h in ("5", "10"):
        figures = evaluation["horizons"][h]
        assert figures["dates"] > 450 and figures["last_date"] <= "2016-12-30"
        assert -1 < figures["rank_ic"]["mean"] < 1 and figures["rank_ic"]["t_stat"] is not None
        assert figures["decile_spread"]["mean"] is not None


# --- Scans: alphas per symbol, whatever the batch ---------------------------------------------


def test_a_symbols_alpha_does_not_depend_on_its_batch(
    subset: tuple[dict[str, Bars], dict[str, str]], trained: TrainedAlpha
) -> None:
    bars, sectors = subset
    as_of = date(2017, 3, 31)
    instruments = [Instrument(s, s, sectors[s]) for s in sorted(sectors)[:90]]
    window = until(bars, as_of)
    whole = {r["symbol"]: r for r in scan_batch(instruments, window, ScanConfig(), as_of, alpha=trained.fit).rows}
    pieces: dict[str, Any] = {}
    for part in (instruments[60:], instruments[:25][::-1], instruments[25:60]):
        pieces.update({r["symbol"]: r for r in scan_batch(part, window, ScanConfig(), as_of, alpha=trained.fit).rows})
    assert pieces == whole and len(whole) > 80
    alphas = [r["alpha_10d"] for r in whole.values()]
    assert all(isinstance(a, float) for a in alphas) and len(set(alphas)) == len(alphas)
    assert not any("no_alpha_model" in r["flags"] for r in whole.values())


def test_rows_say_why_an_alpha_is_empty_and_a_model_never_scores_dates_before_its_cutoff(
    real_bars: dict[str, Bars], trained: TrainedAlpha
) -> None:
    bars = {s: real_bars[s] for s in ("AAPL", "ABBV")}
    as_of = date(2017, 3, 31)
    known, unknown = Instrument("AAPL", "Apple", "Information Technology"), Instrument("ABBV", "AbbVie", "Alchemy")
    window = until(bars, as_of)
    rows = {r["symbol"]: r for r in scan_batch([known, unknown], window, ScanConfig(), as_of, alpha=trained.fit).rows}
    assert rows["AAPL"]["alpha_5d"] is not None and "alpha_unknown_sector" not in rows["AAPL"]["flags"]
    assert rows["ABBV"]["alpha_5d"] is None and rows["ABBV"]["alpha_10d"] is None
    assert "alpha_unknown_sector" in rows["ABBV"]["flags"]
    without = scan_batch([known], window, ScanConfig(), as_of).rows[0]
    assert without["alpha_5d"] is None and "no_alpha_model" in without["flags"]
    with pytest.raises(ValueError, match="cannot score"):
        scan_batch([known], until(bars, date(2016, 6, 29)), ScanConfig(), date(2016, 6, 29), alpha=trained.fit)


# --- Ranking ----------------------------------------------------------------------------------


def row(symbol: str, rating: float, alpha_10d: float | None) -> dict[str, Any]:
    return {"symbol": symbol, "tech_rating": rating, "alpha_5d": None, "alpha_10d": alpha_10d}


def test_the_blend_adds_points_per_typical_alpha_capped_at_three() -> None:
    blend = {"alpha_10d": {"points": 5.0, "scale": 0.002}, "alpha_5d": {"points": 0.0, "scale": 0.001}}
    assert ranking_score(row("A", 60.0, 0.004), blend) == pytest.approx(70.0)
    assert ranking_score(row("A", 60.0, -0.1), blend) == pytest.approx(45.0)
    assert ranking_score(row("A", 60.0, None), blend) == 60.0
    rows = [row("A", 60.0, -0.002), row("B", 58.0, 0.002), row("C", 59.0, None)]
    assert [r["symbol"] for r in rank_rows(rows, blend)] == ["B", "C", "A"]  # 63, 59, 55
    assert [r["symbol"] for r in rank_rows(rows)] == ["A", "C", "B"]  # TechRating alone


def test_a_horizon_enters_the_ranking_only_with_a_significantly_positive_out_of_sample_ic(
    trained: TrainedAlpha,
) -> None:
    def with_ic(mean: float, t: float) -> TrainedAlpha:
        figures = {"rank_ic": {"mean": mean, "t_stat": t}}
        return TrainedAlpha(trained.fit, {"horizons": {"5": figures, "10": figures}}, trained.version)

    assert with_ic(0.03, 2.5).blend["alpha_10d"]["points"] == 5.0
    assert with_ic(0.03, 1.9).blend["alpha_10d"]["points"] == 0.0
    assert with_ic(-0.03, -2.5).blend["alpha_5d"]["points"] == 0.0
    assert with_ic(0.03, 2.5).blend["alpha_5d"]["scale"] == trained.fit.prediction_scale[5] > 0
