"""Shared fixtures.

``market_dir`` is the real S&P 500 data set (``../shared/data/market`` next to the
repository, or ``TECHNIC_MARKET_DATA``); it is read by path and never copied.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.types import Bars, Instrument
from tests.support.processes import RedisServer, WebServer, Workers, database_url, free_port

REPO = Path(__file__).resolve().parent.parent

# Fixtures shared from helper modules (the browser's ``chromium``).
pytest_plugins = ["tests.support.browser", "tests.support.polygon_workers"]


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


# --- Integration: a private redis-server, a database the workers share, real workers -------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SQLite test databases are files, so worker processes can open the same database."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the tests' own; Django and Celery in this process point at it."""
    from channels.layers import channel_layers
    from django.conf import settings

    from technic_project.celery import app

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    settings.REDIS_URL = settings.CACHE_REDIS_URL = server.url
    settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = server.url
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [server.url]
    channel_layers.backends.clear()  # the next get_channel_layer() uses this server
    app.conf.update(broker_url=server.url, result_backend=server.url)
    yield server
    server.stop()


INTEGRATION_DEMO_SYMBOLS = 2000


@pytest.fixture(scope="session")
def workers(
    redis_server: RedisServer, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Two prefork worker processes running the real tasks against the test database."""
    from django.conf import settings
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    settings.TECHNIC_DEMO_SYMBOLS = INTEGRATION_DEMO_SYMBOLS
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "false",
        "TECHNIC_DEMO_SYMBOLS": str(INTEGRATION_DEMO_SYMBOLS),
        "TECHNIC_BATCH_MAX_ATTEMPTS": "3",
    }
    pool = Workers(env, tmp_path_factory.mktemp("workers") / "worker.log")
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture(scope="session")
def web_server(
    redis_server: RedisServer, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    """The ASGI application under daphne, on the test database and redis-server."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    server = WebServer(
        {"REDIS_URL": redis_server.url, "DATABASE_URL": db_url, "DJANGO_DEBUG": "false"},
        tmp_path_factory.mktemp("web") / "daphne.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dead_cache() -> Iterator[str]:
    """CACHE_REDIS_URL pointing at a port nothing listens on (the price cache is down)."""
    from django.test.utils import override_settings

    url = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CACHE_REDIS_URL=url):
        yield url


@pytest.fixture
def owner() -> tuple[Any, str]:
    """A user and their API token."""
    from tests.support.accounts import user_with_token

    return user_with_token("owner")


@pytest.fixture
def scan(owner: tuple[Any, str]) -> Any:
    """A pending scan of ``owner``'s (nothing enqueued)."""
    from scanner.models import Scan

    return Scan.objects.create(owner=owner[0], config={}, data_provider="demo")
