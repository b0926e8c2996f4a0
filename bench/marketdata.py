"""The market data store: what scans cost in requests and seconds once bars are fetched once.

Per database (SQLite, and PostgreSQL when one is reachable at ``TEST_POSTGRES_URL``, default
``postgres://postgres@127.0.0.1:5432/postgres``: a database of the benchmark's own is created
there and dropped after), in a process of its own: a redis-server of its own (the price cache
in its database 1), the fake Polygon server (``tests.support.fake_polygon``, the real bars)
answering after LATENCY_SECONDS, one worker with two processes, the polygon provider with the
tests' settings. On the 505 real symbols with the default lookback (500 bars), requests counted
by the server and scans timed from before ``scan_create`` to the ``finished_at`` their worker
stamps:

* ``backfill``: what ``manage.py marketdata backfill`` does, from the data's first day into an
  empty store (five years, in-process): requests, seconds, bars written, and how much this
  process's peak memory grew meanwhile (its peak before holds the fake server's copy of every
  bar; the 619,000 bars it writes would take 30 MB as arrays alone, held at once);
* ``cold_scan``: the store and the cache empty, the data ending on NEXT_DAY's eve;
* ``next_day_scan``: the next market day appears; a scan asks for it (``as_of`` explicit);
* ``shorter_lookback_scan``: lookback 300 at an earlier ``as_of`` inside stored history;
* ``after_flush_scan``: after ``FLUSHDB`` of the cache's Redis database;
* ``store_cold_seconds`` against ``redis_warm_seconds``: the same scan with the cache flushed
  first (bars read from the store) and at once again (bars in Redis), medians of REPEATS pairs;
  ``store_cold_ratio`` = store-cold / Redis-warm;
* the floor (``store_cold_floor_ratio``): the Redis-warm scan plus half of what reading the 505
  windows from the database and putting them into the cache takes in one process with nothing
  else in the way (``store_to_cache_seconds``; two worker processes share that work). No
  store-cold scan on this machine beats it.

Targets: next_day_scan requests <= 8; store_cold_ratio <= 2 at 505 symbols on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import ROOT, completed_scan, django_with_own_redis, market_dir, peak_rss_mb, report

LATENCY_SECONDS = 0.020
REPEATS = 3
FIRST_DAY = date(2013, 2, 8)
NEXT_DAY = date(2018, 2, 7)
EARLIER = date(2018, 1, 31)
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), help="measure on this database only")
    args = parser.parse_args()
    if args.database:
        print(json.dumps(_measure(args.database)), flush=True)
        return
    figures: dict[str, Any] = {"latency_ms": LATENCY_SECONDS * 1000}
    for database in ("sqlite", "postgresql"):
        if database == "postgresql" and not _reachable(PG_URL):
            figures[database] = f"not measured: no PostgreSQL server at {PG_URL}"
            continue
        run = subprocess.run(
            [sys.executable, "-m", "bench.marketdata", "--database", database],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            sys.exit(f"bench.marketdata on {database} failed:\n{run.stderr[-4000:]}")
        figures[database] = json.loads(run.stdout.strip().splitlines()[-1])
    figures["targets"] = {"next_day_scan.requests": "<= 8", "postgresql.store_cold_ratio": "<= 2"}
    for key, value in figures.items():
        print(f"{key:>12}: {value}")
    report("marketdata", figures)


def _reachable(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def _measure(database: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="technic-bench-marketdata-"))
    from tests.support.fake_polygon import FakePolygon
    from tests.support.polygon_workers import polygon_env

    fake = FakePolygon(market_dir(), latency=LATENCY_SECONDS)
    os.environ.update(polygon_env(fake, market_dir()))
    own_database = f"technic_bench_{uuid.uuid4().hex[:8]}"
    url = ""
    if database == "postgresql":
        _admin(f'CREATE DATABASE "{own_database}"')
        url = PG_URL.rsplit("/", 1)[0] + f"/{own_database}"
    redis_server = django_with_own_redis(work, 500, database_url=url, cache_db=1)
    from tests.support.processes import Workers

    workers = Workers({}, work / "worker.log", app="technic_project")
    try:
        figures: dict[str, Any] = {"backfill": _backfill(fake)}
        workers.start()
        figures.update(_scans(fake, redis_server))
        figures["worker_peak_rss_mb"] = round(workers.peak_rss_mb(), 1)
    finally:
        workers.stop()
        redis_server.stop()
        fake.stop()
        if database == "postgresql":
            from django.db import connections

            connections.close_all()
            _admin(f'DROP DATABASE "{own_database}" WITH (FORCE)')
    return figures


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as connection:
        connection.execute(sql)


def _backfill(fake: Any) -> dict[str, Any]:
    from cache_admin.services import marketdata_backfill
    from market.models import MarketSource, StoredBar, StoredDay, SymbolCoverage

    fake.clear_calls()
    before = peak_rss_mb()
    started = time.perf_counter()
    result = marketdata_backfill(FIRST_DAY, via="bench", budget=10_000)
    seconds = time.perf_counter() - started
    figures = {
        "symbols": result.symbols,
        "requests": len(fake.calls()),
        "seconds": round(seconds, 2),
        "bars_written": result.bars_written,
        "failed": len(result.failed),
        "peak_rss_before_mb": round(before, 1),
        "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
    }
    # the scans below start from an empty store (the calendar stays: it is the provider's)
    StoredBar.objects.all().delete()
    SymbolCoverage.objects.all().delete()
    StoredDay.objects.all().delete()
    MarketSource.objects.update(splits_through=None)
    return figures


def _scans(fake: Any, redis_server: Any) -> dict[str, Any]:
    from django.conf import settings

    from engine.config import ScanConfig
    from market import cache
    from market.models import MarketSource
    from market.sources import DataSource
    from scanner.services import scan_create

    source = DataSource.from_settings()
    cache_db = redis_server.client()
    cache_db.execute_command("SELECT", 1)  # the price cache's database: FLUSHDB leaves the broker alone

    def scan(as_of: date | None, lookback: int = ScanConfig.lookback_days) -> dict[str, Any]:
        fake.clear_calls()
        t0 = time.time()
        created = scan_create(owner=None, config=ScanConfig(as_of=as_of, lookback_days=lookback), source=source)
        done = completed_scan(created.id)
        return {
            "requests": len(fake.calls()),
            "seconds": round(done.finished_at.timestamp() - t0, 3),
            "results": done.metrics["results"],
            "skipped": done.metrics["skipped"],
        }

    figures: dict[str, Any] = {}
    fake.show_until(date(2018, 2, 6))
    MarketSource.objects.update(calendar_read_at=None)  # read again: the day after is gone
    cache.clear()
    figures["cold_scan"] = scan(None)
    fake.show_until(NEXT_DAY)
    time.sleep(settings.TECHNIC_MARKETDATA_CALENDAR_INTERVAL + 0.1)
    figures["next_day_scan"] = scan(NEXT_DAY)
    figures["shorter_lookback_scan"] = scan(EARLIER, 300)
    cache_db.flushdb()
    figures["after_flush_scan"] = scan(NEXT_DAY)
    cold, warm = [], []
    for _ in range(REPEATS):
        cache_db.flushdb()
        cold.append(scan(NEXT_DAY)["seconds"])
        warm.append(scan(NEXT_DAY)["seconds"])
    figures["store_cold_seconds"] = statistics.median(cold)
    figures["redis_warm_seconds"] = statistics.median(warm)
    figures["store_cold_ratio"] = round(figures["store_cold_seconds"] / figures["redis_warm_seconds"], 2)
    extra = statistics.median(_store_to_cache(source) for _ in range(REPEATS))
    figures["store_to_cache_seconds"] = round(extra, 3)
    figures["store_cold_floor_ratio"] = round(
        (figures["redis_warm_seconds"] + extra / 2) / figures["redis_warm_seconds"], 2
    )
    return figures


def _store_to_cache(source: Any) -> float:
    """What a store-cold scan does beyond a Redis-warm one, with nothing else in the way: read
    the 505 windows from the database and put them into the cache, chunk by chunk, in this
    process (a scan's two worker processes share it, so it costs at least half this)."""
    import numpy as np

    from market import cache
    from market.sources import FETCH_CHUNK, stored_provider

    store = stored_provider(source).store
    symbols = [i.symbol for i in stored_provider(source).instruments()]
    calendar = store.calendar(NEXT_DAY)
    end = int(np.searchsorted(calendar, np.datetime64(NEXT_DAY, "D"), side="right"))
    days = calendar[end - 500 : end]
    row = store.source()
    cache.clear()
    started = time.perf_counter()
    for at in range(0, len(symbols), FETCH_CHUNK):
        chunk = symbols[at : at + FETCH_CHUNK]
        cache.put_bars(source.cache_namespace(), NEXT_DAY, 500, store.read(row, chunk, days))
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
