"""The market-data provider interface and its errors.

A provider answers four questions about one data source: which instruments make up its
default universe, which market dates it covers, and the daily bars of given symbols up to
a date. Providers are pure Python (NumPy, SciPy, PyArrow) and import no Django, Celery or
Redis, so the engine, the workers and the benchmarks can all use them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

import numpy as np

from engine.types import Bars, Instrument


class DataProviderError(Exception):
    """Base of every provider error; the message is one clear line a user can act on."""


class DataSourceError(DataProviderError):
    """A bars or universe file is missing, unreadable or malformed."""


class UnknownProviderError(DataProviderError):
    """The configured provider name is not one this version knows."""


class ProviderUnavailable(DataProviderError):
    """A remote provider did not answer usefully: down, timing out, or refusing more requests."""


class ProviderAuthError(DataProviderError):
    """A remote provider rejected the API key (HTTP 401/403). Never retried: it cannot heal."""


@dataclass(frozen=True)
class Split:
    """A stock split: from ``execution_date`` on, one share is ``ratio`` shares (4-for-1: 4.0)."""

    symbol: str
    execution_date: date
    ratio: float


def provider_error_code(err: DataProviderError) -> str:
    """The error code of a data provider's failure, the same for a failed scan (scanner.tasks),
    an API answer (scanner.api) and a page: ``DATA_SOURCE_ERROR`` (local files cannot be read),
    ``DATA_PROVIDER_AUTH`` (the key was rejected), ``DATA_PROVIDER_UNAVAILABLE`` (unreachable,
    circuit breaker open, request budget spent), else ``DATA_PROVIDER_ERROR``."""
    if isinstance(err, DataSourceError):
        return "DATA_SOURCE_ERROR"
    if isinstance(err, ProviderAuthError):
        return "DATA_PROVIDER_AUTH"
    if isinstance(err, ProviderUnavailable):
        return "DATA_PROVIDER_UNAVAILABLE"
    return "DATA_PROVIDER_ERROR"


# What a user can do about each provider error code (the API shows them with the error, and with
# a scan that failed with it).
ERROR_SUGGESTIONS: dict[str, tuple[str, ...]] = {
    "DATA_PROVIDER_UNAVAILABLE": (
        "Start the scan again in a minute: after the cool-down one probe request tests the provider again",
        "See GET /health/detailed: data_provider shows the circuit breaker's state and failures",
        "Check the provider's status page (Polygon: https://status.polygon.io) and the workers' network access",
    ),
    "DATA_PROVIDER_AUTH": (
        "Check POLYGON_API_KEY on every web and worker process (the key in your Polygon dashboard)",
        "Check that your Polygon plan includes daily aggregates for the dates you scan",
    ),
    "DATA_SOURCE_ERROR": ("Check TECHNIC_DATA_PATH and TECHNIC_UNIVERSE_PATH and the files they name",),
}


@runtime_checkable
class MarketDataProvider(Protocol):
    """What the scan needs from a source of daily bars.

    ``name`` is the configuration name (``demo``, ``parquet``, ``csv``, ``polygon``); ``synthetic`` is
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


@runtime_checkable
class ReportsFetchFailures(Protocol):
    """A provider that can say why a symbol's bars could not be fetched (remote providers)."""

    def bars_and_failures(
        self, symbols: Sequence[str], as_of: date, lookback: int
    ) -> tuple[dict[str, Bars], dict[str, str]]:
        """Like ``bars``, plus ``{symbol: error}`` for each symbol whose fetch failed."""
        ...


def bars_and_failures(
    provider: MarketDataProvider, symbols: Sequence[str], as_of: date, lookback: int
) -> tuple[dict[str, Bars], dict[str, str]]:
    """The bars of ``symbols`` and, when the provider reports them, why the missing ones failed."""
    if isinstance(provider, ReportsFetchFailures):
        return provider.bars_and_failures(symbols, as_of, lookback)
    return provider.bars(symbols, as_of, lookback), {}


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
