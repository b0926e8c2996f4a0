"""Shared fixtures.

``market_dir`` is the real S&P 500 data set (``../shared/data/market`` next to the
repository, or ``TECHNIC_MARKET_DATA``); it is read by path and never copied.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from scanner.engine.types import Bars, Instrument

REPO = Path(__file__).resolve().parent.parent


def _market_dir() -> Path:
    path = Path(os.environ.get("TECHNIC_MARKET_DATA", REPO.parent / "shared" / "data" / "market"))
    if not (path / "prices.parquet").is_file():
        pytest.fail(
            f"real market data not found at {path}; set TECHNIC_MARKET_DATA to the folder holding prices.parquet"
        )
    return path


@pytest.fixture(scope="session")
def market_dir() -> Path:
    """Folder with prices.parquet, constituents.csv and anomalies.csv (real 2013-2018 bars)."""
    return _market_dir()


@pytest.fixture(scope="session")
def real_bars(market_dir: Path) -> dict[str, Bars]:
    """Every real symbol's full history as ``Bars``, read straight from the parquet file."""
    table = pq.read_table(market_dir / "prices.parquet")
    symbols = table.column("symbol").to_numpy(zero_copy_only=False).astype(str)
    dates = table.column("date").to_numpy().astype("datetime64[D]")
    cols = {c: table.column(c).to_numpy().astype(np.float64) for c in ("open", "high", "low", "close", "volume")}
    out: dict[str, Bars] = {}
    bounds = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
    for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(symbols)], strict=True):
        out[str(symbols[start])] = Bars(
            dates[start:end], *(cols[c][start:end] for c in ("open", "high", "low", "close", "volume"))
        )
    return out


@pytest.fixture(scope="session")
def real_instruments(market_dir: Path) -> list[Instrument]:
    """The 505 real symbols with name and GICS sector, sorted by symbol."""
    with (market_dir / "constituents.csv").open(newline="") as fh:
        return sorted(
            (Instrument(r["symbol"], r["name"], r["sector"]) for r in csv.DictReader(fh)), key=lambda i: i.symbol
        )


@pytest.fixture(scope="session")
def real_calendar(real_bars: dict[str, Bars]) -> np.ndarray:
    """Every market date of the real data set (the union over symbols)."""
    return np.unique(np.concatenate([b.dates for b in real_bars.values()]))


@pytest.fixture(scope="session")
def anomalies(market_dir: Path) -> list[dict[str, str]]:
    """Rows of anomalies.csv: symbol, date, issue, detail."""
    with (market_dir / "anomalies.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))
