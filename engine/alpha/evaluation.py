"""Walk-forward evaluation: refit on an expanding window, predict the dates that follow, score.

Per horizon ``h`` and out-of-sample date ``t``: the **rank IC** is the Spearman correlation,
across symbols, between the alpha predicted at ``t`` and the excess return realised from ``t``
to ``t + h``; the **decile spread** is the mean realised excess return of the tenth of symbols
with the highest alpha minus that of the tenth with the lowest. Daily figures of an ``h``-day
horizon overlap, so their t-statistics use Newey-West standard errors with ``h - 1`` lags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from engine.alpha.dataset import MIN_CROSS_SECTION, AlphaData
from engine.alpha.model import AlphaSettings, AlphaTrainingError, fit_on_data


def rank_ic(predicted: np.ndarray, realised: np.ndarray) -> float:
    """Spearman correlation (average ranks for ties); NaN when either side is constant."""
    a, b = rankdata(predicted), rankdata(realised)
    a -= a.mean()
    b -= b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else math.nan


def decile_spread(predicted: np.ndarray, realised: np.ndarray) -> float:
    """Mean ``realised`` of the ``n // 10`` highest ``predicted`` minus that of the ``n // 10``
    lowest (ties broken by position, so the answer is deterministic); NaN below 10 values."""
    d = len(predicted) // 10
    if d == 0:
        return math.nan
    order = np.argsort(predicted, kind="stable")
    return float(realised[order[-d:]].mean() - realised[order[:d]].mean())


def newey_west_t(values: np.ndarray, lags: int) -> float:
    """Mean / Newey-West standard error (Bartlett weights over ``lags`` lags); NaN if undefined."""
    n = len(values)
    if n < 2:
        return math.nan
    e = values - values.mean()
    variance = float(e @ e) / n
    for lag in range(1, min(lags, n - 1) + 1):
        variance += 2.0 * (1.0 - lag / (lags + 1)) * float(e[lag:] @ e[:-lag]) / n
    if variance <= 0:
        return math.nan
    return float(values.mean()) / math.sqrt(variance / n)


@dataclass(frozen=True)
class DailyFigures:
    """The walk-forward's raw material: the refit cut-offs (calendar indexes) and, per horizon,
    ``(date index, rank IC, decile spread)`` of every scored out-of-sample date, in date order."""

    cutoffs: list[int]
    days: dict[int, list[tuple[int, float, float]]]


def daily_figures(data: AlphaData, settings: AlphaSettings) -> DailyFigures:
    """Refit and score as :func:`walk_forward` describes, date by date.

    The model with cut-off ``c`` predicts dates ``c .. next cut-off - 1``; a date ``t`` is
    scored for horizon ``h`` once ``t + h`` is within the data. So every figure of date ``t``
    reads only bars up to ``t + h``, and cutting the data later leaves it unchanged.
    Raises AlphaTrainingError when the data is too short for one out-of-sample date.
    """
    longest, shortest = max(settings.horizons), min(settings.horizons)
    usable = np.flatnonzero(data.usable_dates)
    last_test = len(data.calendar) - 1 - shortest
    if len(usable) < settings.min_train_dates or usable[settings.min_train_dates - 1] + longest > last_test:
        raise AlphaTrainingError(
            f"too little history for a walk-forward evaluation: {len(usable)} usable market dates, "
            f"{settings.min_train_dates} to train plus {longest} to see their returns plus out-of-sample dates needed"
        )
    cutoffs = list(range(int(usable[settings.min_train_dates - 1]) + longest, last_test + 1, settings.refit_every))
    days: dict[int, list[tuple[int, float, float]]] = {h: [] for h in settings.horizons}
    n = len(data.symbols)
    for i, cutoff in enumerate(cutoffs):
        fit = fit_on_data(data, cutoff, settings)
        stop = cutoffs[i + 1] if i + 1 < len(cutoffs) else last_test + 1
        block = fit.predict(
            data.features[cutoff:stop].reshape(-1, data.features.shape[2]), data.sectors * (stop - cutoff)
        )
        for h in settings.horizons:
            predicted = block[h].reshape(stop - cutoff, n)
            for t in range(cutoff, stop):
                realised = data.excess[h][t]
                ok = np.isfinite(predicted[t - cutoff]) & np.isfinite(realised)
                if ok.sum() >= MIN_CROSS_SECTION:
                    p, r = predicted[t - cutoff][ok], realised[ok]
                    days[h].append((t, rank_ic(p, r), decile_spread(p, r)))
    return DailyFigures(cutoffs, days)


def walk_forward(data: AlphaData, settings: AlphaSettings) -> dict[str, Any]:
    """Out-of-sample figures of the model fitted as ``settings`` says, over all of ``data``.

    The first model is fitted once ``min_train_dates`` usable dates have their longest forward
    return; then every ``refit_every`` market dates (an expanding window of at most
    ``max_train_dates``). Per horizon: the rank IC's mean, standard deviation, Newey-West
    t-statistic and share of positive dates, the decile spread's mean and t-statistic, and the
    same by calendar year. Deterministic: the same data and settings give the same figures bit
    for bit. Raises AlphaTrainingError when the data is too short for one out-of-sample date.
    """
    figures = daily_figures(data, settings)
    return {
        "method": "walk_forward",
        "settings": settings.as_dict(),
        "refits": len(figures.cutoffs),
        "first_cutoff": str(data.calendar[figures.cutoffs[0]]),
        "symbols": len(data.symbols),
        "horizons": {str(h): _summary(data, figures.days[h], h) for h in settings.horizons},
    }


def _summary(data: AlphaData, rows: list[tuple[int, float, float]], horizon: int) -> dict[str, Any]:
    dates = np.array([t for t, _, _ in rows], dtype=np.int64)
    ic = np.array([v for _, v, _ in rows])
    spread = np.array([v for _, _, v in rows])
    defined = np.isfinite(ic)
    years = data.calendar[dates].astype("datetime64[Y]").astype(int) + 1970
    by_year = {}
    for year in np.unique(years):
        here = years == year
        by_year[str(year)] = {
            "dates": int(here.sum()),
            "rank_ic_mean": _mean(ic[here & defined]),
            "decile_spread_mean": _mean(spread[here]),
        }
    return {
        "dates": len(rows),
        "first_date": str(data.calendar[dates[0]]) if rows else None,
        "last_date": str(data.calendar[dates[-1]]) if rows else None,
        "rank_ic": {
            "mean": _mean(ic[defined]),
            "std": float(ic[defined].std(ddof=1)) if defined.sum() > 1 else None,
            "t_stat": _finite(newey_west_t(ic[defined], horizon - 1)),
            "positive_share": _mean((ic[defined] > 0).astype(float)),
        },
        "decile_spread": {
            "mean": _mean(spread),
            "t_stat": _finite(newey_west_t(spread, horizon - 1)),
        },
        "by_year": by_year,
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
