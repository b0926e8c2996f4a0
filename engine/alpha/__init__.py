"""Alpha estimates: expected excess returns over the next 5 and 10 market dates.

Pure NumPy/SciPy (no Django, Celery or Redis). ``train`` builds the training set from bars
cut at a date, evaluates the model walk-forward on that same data and fits the final model;
``TrainedAlpha`` carries both into a scan. See docs/alpha.md for the method and the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from engine.alpha.dataset import AlphaData, AlphaDataError, build_data
from engine.alpha.evaluation import walk_forward
from engine.alpha.features import FEATURE_WINDOW, FEATURES, features_at_last
from engine.alpha.model import HORIZONS, AlphaFit, AlphaSettings, AlphaTrainingError, fit_on_data, model_version
from engine.types import Bars

__all__ = (
    "FEATURES",
    "FEATURE_WINDOW",
    "HORIZONS",
    "AlphaData",
    "AlphaDataError",
    "AlphaFit",
    "AlphaSettings",
    "AlphaTrainingError",
    "TrainedAlpha",
    "build_data",
    "features_at_last",
    "fit_alpha",
    "model_version",
    "no_model_metrics",
    "ranking_score",
    "train",
    "walk_forward",
)

BLEND_POINTS = 5.0
"""TechRating points one typical alpha difference (``prediction_scale``) of a horizon is worth."""
BLEND_MIN_T = 2.0
"""A horizon enters the ranking only if its walk-forward rank IC is positive with at least this t-statistic."""
BLEND_Z_CAP = 3.0


def fit_alpha(
    bars: Mapping[str, Bars], sectors: Mapping[str, str], cutoff: date, settings: AlphaSettings | None = None
) -> AlphaFit:
    """The model fitted on the bars of the symbols of ``sectors`` dated on or before ``cutoff``.

    Bars after ``cutoff`` are never read. Raises AlphaDataError or AlphaTrainingError when
    there is too little data.
    """
    settings = settings or AlphaSettings()
    data = build_data(bars, sectors, cutoff, settings.horizons)
    return fit_on_data(data, len(data.calendar) - 1, settings)


@dataclass(frozen=True, eq=False)
class TrainedAlpha:
    """A fitted model with the walk-forward evaluation made on the data it was trained on, and
    its version (``model_version``: named by the data, the cut-off and the code, not the floats)."""

    fit: AlphaFit
    evaluation: dict[str, Any]
    version: str

    @property
    def blend(self) -> dict[str, dict[str, float]]:
        """Per row field (``alpha_5d``, ``alpha_10d``): ``points`` (BLEND_POINTS when the
        horizon's rank IC is positive with a t-statistic of at least BLEND_MIN_T, else 0) and
        ``scale`` (the fit's prediction_scale). Read by :func:`ranking_score`."""
        out = {}
        for h in self.fit.horizons:
            ic = self.evaluation["horizons"][str(h)]["rank_ic"]
            proven = ic["mean"] is not None and ic["mean"] > 0 and (ic["t_stat"] or 0.0) >= BLEND_MIN_T
            out[f"alpha_{h}d"] = {"points": BLEND_POINTS if proven else 0.0, "scale": self.fit.prediction_scale[h]}
        return out

    def metrics(self) -> dict[str, Any]:
        """What a scan using this model records under ``metrics["alpha"]``."""
        return {
            "model": self.version,
            "train_start": self.fit.train_start.isoformat(),
            "train_end": self.fit.train_end.isoformat(),
            "data_cutoff": self.fit.data_cutoff.isoformat(),
            "features": [*self.fit.features, "sector"],
            "evaluation": self.evaluation,
            "blend": self.blend,
        }


def train(
    bars: Mapping[str, Bars], sectors: Mapping[str, str], cutoff: date, settings: AlphaSettings | None = None
) -> TrainedAlpha:
    """Evaluate walk-forward on the data up to ``cutoff``, then fit the model on all of it.

    Only bars dated on or before ``cutoff`` are read, by the evaluation as by the fit.
    Deterministic. Raises AlphaDataError or AlphaTrainingError when there is too little data.
    """
    settings = settings or AlphaSettings()
    data = build_data(bars, sectors, cutoff, settings.horizons)
    evaluation = walk_forward(data, settings)
    fit = fit_on_data(data, len(data.calendar) - 1, settings)
    return TrainedAlpha(fit, evaluation, model_version(data, settings))


def no_model_metrics(as_of: date) -> dict[str, Any]:
    """``metrics["alpha"]`` of a scan for which no model fits: alphas are empty, ranking is by TechRating."""
    return {
        "model": None,
        "reason": f"no alpha model of this data source has a cut-off on or before {as_of.isoformat()} "
        "(train one with manage.py train_alpha)",
    }


def ranking_score(row: Mapping[str, Any], blend: Mapping[str, Mapping[str, float]] | None) -> float:
    """``tech_rating + sum over horizons of points * clip(alpha / scale, -3, 3)``.

    A horizon whose alpha is empty, or whose ``points`` or ``scale`` is 0, adds nothing.
    """
    score = float(row["tech_rating"])
    for name, weights in (blend or {}).items():
        value, points, scale = row.get(name), weights["points"], weights["scale"]
        if value is not None and points and scale > 0 and math.isfinite(value):
            score += points * max(-BLEND_Z_CAP, min(BLEND_Z_CAP, value / scale))
    return score
