"""A batch of symbols laid out as left-aligned 2-D arrays for vectorised computation.

Row ``i`` holds symbol ``i``'s bars in columns ``0 .. lengths[i]-1``; columns past a row's
length are NaN (NaT for dates). Recursive filters run left to right, so the padding never
reaches a value that is read; every "value at the last bar" is gathered at ``lengths - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.types import Bars


class Aligned:
    """Left-aligned rows of ``lengths`` bars each: reading each row's last values."""

    lengths: np.ndarray  # (S,) int64, each >= 1

    @property
    def n_symbols(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.n_symbols)

    def last(self, values: np.ndarray, back: int = 0) -> np.ndarray:
        """Each row's value ``back`` bars before its last bar (NaN where that is before bar 0)."""
        idx = self.lengths - 1 - back
        out = values[self.rows, np.maximum(idx, 0)].astype(float)
        out[idx < 0] = np.nan
        return out

    def tail(self, values: np.ndarray, n: int) -> np.ndarray:
        """(S, n) window of each row's last ``n`` values; NaN where the row is shorter than ``n``."""
        idx = (self.lengths - n)[:, None] + np.arange(n)[None, :]
        out = values[self.rows[:, None], np.maximum(idx, 0)].astype(float)
        out[idx < 0] = np.nan
        return out


@dataclass(frozen=True, eq=False)
class Panel(Aligned):
    dates: np.ndarray  # (S, T) datetime64[D], NaT padded
    open: np.ndarray  # (S, T) float64, NaN padded
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    lengths: np.ndarray  # (S,) int64, each >= 1


def build_panel(bars: Sequence[Bars]) -> Panel:
    """Stack bars (each with at least one bar) into a left-aligned panel."""
    if not bars:
        raise ValueError("build_panel needs at least one symbol")
    lengths = np.array([len(b) for b in bars], dtype=np.int64)
    if lengths.min() < 1:
        raise ValueError("build_panel needs at least one bar per symbol")
    s, t = len(bars), int(lengths.max())
    dates = np.full((s, t), np.datetime64("NaT"), dtype="datetime64[D]")
    fields = {name: np.full((s, t), np.nan) for name in ("open", "high", "low", "close", "volume")}
    for i, b in enumerate(bars):
        n = len(b)
        dates[i, :n] = b.dates
        for name, arr in fields.items():
            arr[i, :n] = getattr(b, name)
    return Panel(dates=dates, lengths=lengths, **fields)
