"""Plain data types shared by the engine and the market-data providers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

GICS_SECTORS: tuple[str, ...] = (
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Telecommunication Services",
    "Utilities",
)


@dataclass(frozen=True)
class Instrument:
    """One member of a universe."""

    symbol: str
    name: str
    sector: str


@dataclass(frozen=True, eq=False)
class Bars:
    """Daily bars of one symbol, oldest first, dates strictly increasing.

    ``dates`` is ``datetime64[D]``; prices and volume are ``float64`` arrays of the same length.
    Values are exactly what the source gave: validation flags bad bars, it never edits them.
    """

    dates: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    def window(self, as_of: date | None, lookback: int) -> Bars:
        """The last ``lookback`` bars dated on or before ``as_of`` (all bars when ``None``)."""
        end = len(self) if as_of is None else int(np.searchsorted(self.dates, np.datetime64(as_of, "D"), side="right"))
        start = max(0, end - lookback)
        return Bars(
            self.dates[start:end],
            self.open[start:end],
            self.high[start:end],
            self.low[start:end],
            self.close[start:end],
            self.volume[start:end],
        )
