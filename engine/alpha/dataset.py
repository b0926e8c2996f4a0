"""The training set: features and forward excess returns of every symbol on a market calendar.

Built from bars cut at a date: every bar after ``cutoff`` is dropped before anything is
computed, so nothing after it can reach a feature, a target, the calendar or the fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from engine.alpha.features import FEATURES, feature_series
from engine.panel import build_panel
from engine.types import Bars

MIN_CROSS_SECTION = 20
"""Symbols a date needs (with a defined target) for its universe mean and its evaluation."""
WINSOR_QUANTILES = (0.01, 0.99)
"""Per date, fitting targets are clipped to these cross-sectional quantiles (bad prints, jumps)."""


class AlphaDataError(ValueError):
    """The bars cannot make a training set (no symbol with bars on or before the cut-off)."""


@dataclass(frozen=True, eq=False)
class AlphaData:
    """Everything the fit and the walk-forward evaluation read, on one market calendar.

    ``features`` is ``(T, S, F)`` (columns of FEATURES) and NaN where undefined; ``excess[h]``
    is ``(T, S)``: the return from the close of date ``t`` to the close ``h`` market dates
    later minus that return's mean over every symbol that has it (NaN where the symbol lacks
    either close, or the date has fewer than MIN_CROSS_SECTION such symbols); ``target[h]`` is
    ``excess[h]`` clipped per date to WINSOR_QUANTILES.
    """

    calendar: np.ndarray  # (T,) datetime64[D], every date some symbol has a bar, up to the cut-off
    symbols: tuple[str, ...]
    sectors: tuple[str, ...]  # (S,) sector of each symbol
    features: np.ndarray
    excess: dict[int, np.ndarray]
    target: dict[int, np.ndarray]
    complete: np.ndarray  # (T, S) bool: every feature defined
    usable_dates: np.ndarray  # (T,) bool: at least MIN_CROSS_SECTION symbols complete
    digest: str  # names the input: see input_digest

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(sorted(self.excess))


def build_data(
    bars: Mapping[str, Bars], sectors: Mapping[str, str], cutoff: date, horizons: Sequence[int]
) -> AlphaData:
    """The training set of every symbol of ``sectors`` from its bars dated on or before ``cutoff``.

    Symbols without a bar by then are left out. Deterministic: symbols are taken in sorted
    order. Raises AlphaDataError when no symbol has a bar by the cut-off.
    """
    symbols, windows = [], []
    for symbol in sorted(sectors):
        b = bars.get(symbol)
        if b is None:
            continue
        w = b.window(cutoff, len(b))
        if len(w):
            symbols.append(symbol)
            windows.append(w)
    if not windows:
        raise AlphaDataError(f"no symbol has bars on or before {cutoff.isoformat()}")
    calendar = np.unique(np.concatenate([w.dates for w in windows]))
    panel = build_panel(windows)
    per_bar = feature_series(panel.close, panel.high, panel.low, panel.volume)
    t, s = len(calendar), len(symbols)
    features = np.full((t, s, len(FEATURES)), np.nan)
    close = np.full((t, s), np.nan)
    for i, w in enumerate(windows):
        at = np.searchsorted(calendar, w.dates)
        features[at, i, :] = per_bar[i, : len(w), :]
        close[at, i] = w.close
    excess = {h: _excess_returns(close, h) for h in sorted(set(horizons))}
    target = {h: _winsorize(x) for h, x in excess.items()}
    complete = np.isfinite(features).all(axis=2)
    return AlphaData(
        calendar=calendar,
        symbols=tuple(symbols),
        sectors=tuple(sectors[x] for x in symbols),
        features=features,
        excess=excess,
        target=target,
        complete=complete,
        usable_dates=complete.sum(axis=1) >= MIN_CROSS_SECTION,
        digest=input_digest(symbols, [sectors[x] for x in symbols], windows),
    )


DIGEST_DECIMALS = 6
"""Prices and volumes are rounded to this many decimals before hashing, so the last bits of a
float (which a generated market may set differently on another CPU) cannot change the digest."""


def input_digest(symbols: Sequence[str], sectors: Sequence[str], windows: Sequence[Bars]) -> str:
    """SHA-256 of the training input: each symbol, its sector, its dates and its OHLCV rounded
    to DIGEST_DECIMALS. Equal for equal data on any machine; a changed bar changes it."""
    h = hashlib.sha256()
    for symbol, sector, w in zip(symbols, sectors, windows, strict=True):
        h.update(f"{symbol}\0{sector}\0{len(w)}\0".encode())
        h.update(w.dates.astype("datetime64[D]").astype(np.int64).tobytes())
        for column in (w.open, w.high, w.low, w.close, w.volume):
            h.update(np.round(np.asarray(column, dtype=np.float64), DIGEST_DECIMALS).tobytes())
    return h.hexdigest()


def _excess_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """``(T, S)`` forward ``horizon``-date return minus its cross-sectional mean at each date."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 market date, got {horizon}")
    fwd = np.full(close.shape, np.nan)
    if close.shape[0] > horizon:
        with np.errstate(divide="ignore", invalid="ignore"):
            fwd[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    fwd[~np.isfinite(fwd)] = np.nan
    out = np.full(close.shape, np.nan)
    for t, row in enumerate(fwd):
        # The mean of the defined values only, so symbols absent that day (or not listed
        # yet) cannot change its rounding.
        values = row[np.isfinite(row)]
        if len(values) >= MIN_CROSS_SECTION:
            out[t] = row - values.mean()
    return out


def _winsorize(x: np.ndarray) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    rows = np.flatnonzero(np.isfinite(x).any(axis=1))
    if rows.size:
        low, high = np.nanquantile(x[rows], WINSOR_QUANTILES, axis=1)
        out[rows] = np.clip(x[rows], low[:, None], high[:, None])
    return out
