"""Sub-scores, the 0-100 TechRating and the signal (formula documented in docs/tech-rating.md).

Every input is scaled by the symbol's own volatility (ATR or realised volatility) so one
formula fits a $5 stock and a $500 stock; each scaled input is a rough z-score. A sub-score
is ``100 * logistic(z)``; the TechRating is ``100 * logistic(sum(w_i * z_i) * RATING_GAIN)``.
Because the composite is a sum of clipped z-scores rather than an average of bounded scores,
it does not collapse towards 50, and the ratings spread across the range on real data.
The rating of a symbol depends only on that symbol's bars (never on the rest of the batch),
so batching cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.indicators import IndicatorSet

WEIGHTS: dict[str, float] = {
    "trend": 0.30,
    "momentum": 0.25,
    "breakout": 0.15,
    "volume": 0.10,
    "volatility": 0.10,
    "oscillator": 0.10,
}
RATING_GAIN = 1.6
Z_CLIP = 3.0
SIGNALS: tuple[tuple[float, str], ...] = ((80.0, "strong_buy"), (60.0, "buy"), (40.0, "hold"), (20.0, "sell"))
LOWEST_SIGNAL = "strong_sell"


@dataclass(frozen=True, eq=False)
class Scores:
    z: dict[str, np.ndarray]  # per sub-score, (S,) clipped z
    subscores: dict[str, np.ndarray]  # per sub-score, (S,) 0-100
    tech_rating: np.ndarray  # (S,) 0-100
    signal: list[str]


def _logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _clip(z: np.ndarray) -> np.ndarray:
    return np.clip(z, -Z_CLIP, Z_CLIP)


def subscore_z(ind: IndicatorSet) -> dict[str, np.ndarray]:
    """The clipped z of each sub-score. NaN inputs give NaN (the caller must not score them)."""
    atr = ind.atr_14
    period_vol_21 = ind.vol_20d * np.sqrt(21 / 252)
    period_vol_5 = ind.vol_20d * np.sqrt(5 / 252)
    alignment = np.where(
        (ind.sma_20 > ind.sma_50) & (ind.sma_50 > ind.sma_200),
        1.0,
        np.where((ind.sma_20 < ind.sma_50) & (ind.sma_50 < ind.sma_200), -1.0, 0.0),
    )
    di_sum = ind.plus_di_14 + ind.minus_di_14
    di_direction = np.divide(ind.plus_di_14 - ind.minus_di_14, di_sum, out=np.zeros_like(di_sum), where=di_sum > 0)
    trend = (
        0.35 * _clip((ind.close - ind.sma_50) / (2.0 * atr))
        + 0.35 * _clip((ind.close - ind.sma_200) / (4.0 * atr))
        + 0.50 * alignment
        + 0.60 * di_direction * np.minimum(ind.adx_14 / 25.0, 2.0)
        + 0.30 * _clip(ind.sma_50_slope / (2.0 * ind.atr_pct))
    )
    momentum = (
        0.50 * _clip(ind.ret_21d / period_vol_21)
        + 0.30 * _clip(ind.ret_5d / period_vol_5)
        + 0.50 * _clip(ind.macd_hist / (0.25 * atr))
        + 0.20 * _clip((ind.macd_hist - ind.macd_hist_prev) / (0.25 * atr))
    )
    breakout = _clip((ind.pct_from_52w_high + 0.10) / 0.06) * 0.7 + 0.6 * _clip((ind.bb_pct_b - 0.5) * 2.0)
    direction = np.sign(ind.ret_5d)
    volume = 3.0 * ind.obv_trend + 0.8 * direction * np.log(np.maximum(ind.volume_ratio, 1e-3))
    volatility = (0.23 - ind.vol_20d) / 0.10
    rsi = ind.rsi_14
    oscillator = np.where(rsi <= 70.0, (rsi - 50.0) / 8.0, 2.5 - (rsi - 70.0) / 4.0)
    raw = {
        "trend": trend,
        "momentum": momentum,
        "breakout": breakout,
        "volume": volume,
        "volatility": volatility,
        "oscillator": oscillator,
    }
    return {name: _clip(value) for name, value in raw.items()}


def rating_of(z: dict[str, np.ndarray]) -> np.ndarray:
    """The TechRating (0-100, one decimal) of clipped sub-score z values of any shape."""
    composite = sum(WEIGHTS[name] * z[name] for name in WEIGHTS)
    return np.round(100.0 * _logistic(RATING_GAIN * np.asarray(composite)), 1)


def subscores_of(z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each sub-score (0-100, one decimal) of its clipped z."""
    return {name: np.round(100.0 * _logistic(value), 1) for name, value in z.items()}


def score(ind: IndicatorSet) -> Scores:
    """Sub-scores (0-100), TechRating (0-100, one decimal) and signal for every row."""
    z = subscore_z(ind)
    rating = rating_of(z)
    return Scores(z=z, subscores=subscores_of(z), tech_rating=rating, signal=[signal_for(r) for r in rating])


def signal_for(rating: float) -> str:
    for threshold, name in SIGNALS:
        if rating >= threshold:
            return name
    return LOWEST_SIGNAL
