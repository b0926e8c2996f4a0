"""The market-data provider interface and its errors.

A provider answers four questions about one data source: which instruments make up its
default universe, which market dates it covers, and the daily bars of given symbols up to
a date. Providers are pure Python (NumPy, SciPy, PyArrow) and import no Django, Celery or
Redis, so the engine, the workers and the benchmarks can all use them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol, runtime_checkable

import numpy as np

from scanner.engine.types import Bars, Instrument


class DataProviderError(Exception):
    """Base of every provider error; the message is one clear line a user can act on."""


class DataSourceError(DataProviderError):
    """A bars or universe file is missing, unreadable or malformed."""


class UnknownProviderError(DataProviderError):
    """The configured provider name is not one this version knows."""


@runtime_checkable
class MarketDataProvider(Protocol):
    """What the scan needs from a source of daily bars.

    ``name`` is the configuration name (``demo``, ``parquet``, ``csv``); ``synthetic`` is
    True only for generated data, and callers show it wherever the data is displayed.
    Methods may read the source lazily on first use and raise :class:`DataSourceError`
    then; after a successful read, the answers do not change for the provider's lifetime.
    """

    name: str
    synthetic: bool

    def instruments(self) -> list[Instrument]:
        """The default universe, sorted by symbol."""
        ...

    def calendar(self) -> np.ndarray:
        """Sorted unique ``datetime64[D]`` market dates of the source."""
        ...

    def date_range(self) -> tuple[date, date]:
        """First and last market date of the source."""
        ...

    def bars(self, symbols: Sequence[str], as_of: date, lookback: int) -> dict[str, Bars]:
        """For each symbol with data, its last ``lookback`` bars dated on or before ``as_of``.

        A symbol that is unknown, or has no bar on or before ``as_of``, is absent from the
        answer (the scan records it as ``no_data``). ``lookback`` must be at least 1.
        """
        ...


def check_lookback(lookback: int) -> None:
    """Raise ``ValueError`` unless ``lookback`` is a positive number of bars."""
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1 bar, got {lookback}")


def window_copy(bars: Bars, as_of: date, lookback: int) -> Bars | None:
    """``bars.window(as_of, lookback)`` as owned arrays, or None when it holds no bar.

    Copying keeps a caller that holds one symbol's window from pinning the whole block
    of arrays the window was sliced from.
    """
    win = bars.window(as_of, lookback)
    if len(win) == 0:
        return None
    return Bars(win.dates.copy(), win.open.copy(), win.high.copy(), win.low.copy(), win.close.copy(), win.volume.copy())


def calendar_range(calendar: np.ndarray) -> tuple[date, date]:
    """First and last date of a non-empty ``datetime64[D]`` calendar as ``date`` objects."""
    first, last = calendar[0].astype(object), calendar[-1].astype(object)
    return first, last
