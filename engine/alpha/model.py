"""The fitted alpha model: reference quantiles, ridge coefficients, prediction, serialisation.

Each feature is mapped to a score in [-0.5, 0.5] by the empirical distribution of that
feature over the training window (``quantiles``, stored with the model), so a symbol's score,
and with it its alpha, depends only on its own bars and the model: never on which other
symbols share its batch or its scan. Sectors enter as one indicator column each. Per horizon a
ridge regression (intercept unpenalised) maps the scores to the forward excess return.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np

from engine.alpha.dataset import AlphaData
from engine.alpha.features import FEATURES

HORIZONS: tuple[int, ...] = (5, 10)
"""Market dates ahead of ``alpha_5d`` and ``alpha_10d``."""
QUANTILE_POINTS = 101
QUANTILE_STRIDE = 4


class AlphaTrainingError(ValueError):
    """The data cannot train a model (too little history before the cut-off); one clear line."""


@dataclass(frozen=True)
class AlphaSettings:
    """How models are fitted and evaluated; the defaults are the documented model (docs/alpha.md)."""

    horizons: tuple[int, ...] = HORIZONS
    ridge_lambda: float = 0.01
    min_train_dates: int = 252
    max_train_dates: int = 1260
    refit_every: int = 63

    def as_dict(self) -> dict[str, Any]:
        return {
            "horizons": list(self.horizons),
            "ridge_lambda": self.ridge_lambda,
            "min_train_dates": self.min_train_dates,
            "max_train_dates": self.max_train_dates,
            "refit_every": self.refit_every,
        }


@dataclass(frozen=True, eq=False)
class AlphaFit:
    """A fitted model. ``coefficients[h]`` has one weight per feature then one per sector.

    ``prediction_scale[h]`` is the mean over training dates of the cross-sectional standard
    deviation of the in-sample predictions: the size of a typical alpha difference.
    """

    horizons: tuple[int, ...]
    features: tuple[str, ...]
    sectors: tuple[str, ...]
    quantiles: np.ndarray  # (F, QUANTILE_POINTS)
    coefficients: dict[int, np.ndarray]
    intercepts: dict[int, float]
    prediction_scale: dict[int, float]
    ridge_lambda: float
    train_start: date
    train_end: date
    data_cutoff: date
    n_dates: int
    n_symbols: int
    n_samples: dict[int, int]

    def design(self, features: np.ndarray, sectors: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, F + K)`` regressors of ``(N, F)`` features, and which rows are usable: every
        feature finite and a sector the model knows (the other rows' regressors are meaningless)."""
        column = {s: k for k, s in enumerate(self.sectors)}
        index = np.array([column.get(s, -1) for s in sectors], dtype=np.int64)
        return self._design(features, index), np.isfinite(features).all(axis=1) & (index >= 0)

    def _design(self, features: np.ndarray, sector_index: np.ndarray) -> np.ndarray:
        grid = np.linspace(-0.5, 0.5, self.quantiles.shape[1])
        n, f = features.shape[0], len(self.features)
        x = np.zeros((n, f + len(self.sectors)))
        for j in range(f):
            x[:, j] = np.interp(features[:, j], self.quantiles[j], grid)
        known = np.flatnonzero(sector_index >= 0)
        x[known, f + sector_index[known]] = 1.0
        return x

    def predict(self, features: np.ndarray, sectors: Sequence[str]) -> dict[int, np.ndarray]:
        """Expected excess return per horizon of each ``(N, F)`` feature row; NaN for a row
        with an undefined feature or a sector the model was not trained on."""
        x, usable = self.design(features, sectors)
        out = {}
        for h in self.horizons:
            pred = _linear(x, self.coefficients[h], self.intercepts[h])
            pred[~usable] = np.nan
            out[h] = pred
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters; ``from_dict(to_dict())`` predicts bit for bit the same."""
        return {
            "horizons": list(self.horizons),
            "features": list(self.features),
            "sectors": list(self.sectors),
            "quantiles": self.quantiles.tolist(),
            "coefficients": {str(h): self.coefficients[h].tolist() for h in self.horizons},
            "intercepts": {str(h): self.intercepts[h] for h in self.horizons},
            "prediction_scale": {str(h): self.prediction_scale[h] for h in self.horizons},
            "ridge_lambda": self.ridge_lambda,
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "data_cutoff": self.data_cutoff.isoformat(),
            "n_dates": self.n_dates,
            "n_symbols": self.n_symbols,
            "n_samples": {str(h): self.n_samples[h] for h in self.horizons},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlphaFit:
        horizons = tuple(int(h) for h in data["horizons"])
        return cls(
            horizons=horizons,
            features=tuple(data["features"]),
            sectors=tuple(data["sectors"]),
            quantiles=np.asarray(data["quantiles"], dtype=np.float64),
            coefficients={h: np.asarray(data["coefficients"][str(h)], dtype=np.float64) for h in horizons},
            intercepts={h: float(data["intercepts"][str(h)]) for h in horizons},
            prediction_scale={h: float(data["prediction_scale"][str(h)]) for h in horizons},
            ridge_lambda=float(data["ridge_lambda"]),
            train_start=date.fromisoformat(data["train_start"]),
            train_end=date.fromisoformat(data["train_end"]),
            data_cutoff=date.fromisoformat(data["data_cutoff"]),
            n_dates=int(data["n_dates"]),
            n_symbols=int(data["n_symbols"]),
            n_samples={h: int(data["n_samples"][str(h)]) for h in horizons},
        )

    def named_coefficients(self) -> dict[str, dict[str, float]]:
        """Per horizon (``"5"``, ``"10"``) each regressor's weight by name (``sector:<name>``), and the intercept."""
        names = [*self.features, *(f"sector:{s}" for s in self.sectors)]
        return {
            str(h): {**dict(zip(names, self.coefficients[h].tolist(), strict=True)), "intercept": self.intercepts[h]}
            for h in self.horizons
        }


MODEL_REVISION = 1
"""Raised whenever a change to the features, the dataset or the fit changes what a model is,
so that models trained by different code never share a version."""


def model_version(data: AlphaData, settings: AlphaSettings) -> str:
    """``<cut-off YYYYMMDD>-<first 10 hex digits of a SHA-256>`` of the training input's digest,
    the settings, the features and MODEL_REVISION: the same data, cut-off and code give the same
    version on every machine, whatever the round-off of the fitted floats."""
    named = {
        "data": data.digest,
        "settings": settings.as_dict(),
        "features": list(FEATURES),
        "quantiles": [QUANTILE_POINTS, QUANTILE_STRIDE],
        "revision": MODEL_REVISION,
    }
    canonical = json.dumps(named, sort_keys=True, separators=(",", ":"))
    cutoff = data.calendar[-1].astype(object)
    return f"{cutoff:%Y%m%d}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


def fit_on_data(data: AlphaData, cutoff_index: int, settings: AlphaSettings) -> AlphaFit:
    """Fit on the samples of ``data`` whose target ends on or before ``data.calendar[cutoff_index]``.

    The training window ends ``max(horizons)`` market dates before the cut-off (its last
    sample's longest forward return ends on the cut-off) and starts at most
    ``max_train_dates`` usable dates earlier. A date is usable when at least MIN_CROSS_SECTION
    symbols have every feature. Raises AlphaTrainingError with fewer than ``min_train_dates``.
    """
    missing = set(settings.horizons) - set(data.horizons)
    if missing:
        raise ValueError(f"the data has no targets for horizons {sorted(missing)}")
    end = cutoff_index - max(settings.horizons)
    usable = np.flatnonzero(data.usable_dates[: max(end + 1, 0)])[-settings.max_train_dates :]
    if len(usable) < settings.min_train_dates:
        cutoff = data.calendar[cutoff_index] if 0 <= cutoff_index < len(data.calendar) else "the cut-off"
        raise AlphaTrainingError(
            f"{len(usable)} market dates with features and {max(settings.horizons)}-day forward returns by "
            f"{cutoff}; at least {settings.min_train_dates} are needed (features need 252 bars of history)"
        )
    start = int(usable[0])
    window = data.complete[start : end + 1] & data.usable_dates[start : end + 1, None]
    dates, symbols = np.nonzero(window)
    raw = data.features[start : end + 1][dates, symbols]
    # Every QUANTILE_STRIDE-th sample (dates in order, symbols within) describes the distribution
    # as well as all of them, at a fraction of the sorting.
    quantiles = np.quantile(raw[::QUANTILE_STRIDE], np.linspace(0.0, 1.0, QUANTILE_POINTS), axis=0).T
    sectors = tuple(sorted({data.sectors[i] for i in np.unique(symbols).tolist()}))
    shell = AlphaFit(
        horizons=tuple(settings.horizons),
        features=FEATURES,
        sectors=sectors,
        quantiles=np.ascontiguousarray(quantiles),
        coefficients={},
        intercepts={},
        prediction_scale={},
        ridge_lambda=settings.ridge_lambda,
        train_start=data.calendar[start].astype(object),
        train_end=data.calendar[end].astype(object),
        data_cutoff=data.calendar[cutoff_index].astype(object),
        n_dates=len(usable),
        n_symbols=int(np.unique(symbols).size),
        n_samples={},
    )
    column = {s: k for k, s in enumerate(sectors)}
    sector_index = np.array([column.get(s, -1) for s in data.sectors], dtype=np.int64)
    x = shell._design(raw, sector_index[symbols])
    coefficients, intercepts, scale, n_samples = {}, {}, {}, {}
    for h in settings.horizons:
        y = data.target[h][start : end + 1][dates, symbols]
        rows = np.isfinite(y)
        xh, yh, dh = (x, y, dates) if rows.all() else (x[rows], y[rows], dates[rows])
        beta, alpha = _ridge(xh, yh, settings.ridge_lambda)
        coefficients[h], intercepts[h], n_samples[h] = beta, alpha, len(yh)
        scale[h] = _mean_cross_sectional_std(_linear(xh, beta, alpha), dh)
    return replace(shell, coefficients=coefficients, intercepts=intercepts, prediction_scale=scale, n_samples=n_samples)


def _linear(x: np.ndarray, beta: np.ndarray, intercept: float) -> np.ndarray:
    """``intercept + x @ beta``, summed column by column: each row's value is then the same
    bit for bit however many rows come with it (a matrix product's rounding is not)."""
    out = np.full(x.shape[0], intercept)
    for j in range(x.shape[1]):
        out += x[:, j] * beta[j]
    return out


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """argmin ||y - a - x b||^2 / n + lam ||b||^2 (the intercept ``a`` is not penalised)."""
    n = len(y)
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    gram = (x.T @ x) / n - np.outer(x_mean, x_mean) + lam * np.eye(x.shape[1])
    beta = np.linalg.solve(gram, (x.T @ y) / n - x_mean * y_mean)
    return beta, y_mean - float(x_mean @ beta)


def _mean_cross_sectional_std(values: np.ndarray, dates: np.ndarray) -> float:
    counts = np.bincount(dates)
    present = counts > 1
    sums, squares = np.bincount(dates, values), np.bincount(dates, values * values)
    var = (squares[present] - sums[present] ** 2 / counts[present]) / (counts[present] - 1)
    return float(np.sqrt(np.maximum(var, 0.0)).mean())
