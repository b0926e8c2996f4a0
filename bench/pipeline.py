"""End-to-end scan time through the workers (enqueue → completed) against the in-process scan.

Sets up its own redis-server, a SQLite database and one worker with two processes, then on
the 505 real symbols and on 5,000 synthetic ones measures, in the same run:

* in-process: ``run_scan`` (what ``manage.py scan`` does) with the provider already loaded;
* distributed: from before ``scan_create`` to the ``finished_at`` its worker stamps on the
  completed scan, with the price cache emptied first (``ratio_*``: the data stage fetches
  every symbol), at the default batch size, at batch size 1 (505 only) and at a sweep of batch
  sizes;
* distributed with the price cache already holding the bars (``ratio_*_warm_cache``), as
  for a second scan of the same data within the cache's lifetime;
* the floor (``floor_ratio_*``): what two processes take for the work a distributed scan cannot
  leave out, with nothing else (see ``_Floor``). No scheduling of the same work on these two
  cores beats it, so a target below it is out of reach on this machine. And the in-process
  scan's own work split over the two processes (``compute_only_floor_ratio_*``): what the two
  cores give with no cache round trip and no rows written.

Ratios are distributed / in-process, medians of REPEATS runs (REPEATS_505 at 505 symbols, where
one scan takes a tenth of a second and single runs vary by a third). Targets: ratio_505 <= 1.5,
ratio_5000 <= 0.7. Also reports the workers' peak memory.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import completed_scan, django_with_own_redis, market_dir, report

REPEATS = 3
REPEATS_505 = 9
SYNTHETIC = 5000
SWEEP = (50, 100, 250, 500, 1000)


def _median_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="technic-bench-"))
    redis_server = django_with_own_redis(work, SYNTHETIC)
    from tests.support.processes import Workers

    workers = Workers(
        {
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "TECHNIC_DEMO_SYMBOLS": str(SYNTHETIC),
        },
        work / "worker.log",
        app="technic_project",
    )
    try:
        workers.start()
        figures = _measure(redis_server)
        figures["worker_peak_rss_mb"] = round(workers.peak_rss_mb(), 1)
    finally:
        workers.stop()
        redis_server.stop()
    figures["targets"] = {"ratio_505": "<= 1.5", "ratio_5000": "<= 0.7"}
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    report("pipeline", figures)


def _measure(redis_server: Any) -> dict[str, Any]:
    from django.conf import settings

    from engine.config import ScanConfig
    from market import cache
    from market.sources import DataSource, provider_for
    from progress.tracker import ProgressTracker
    from scanner.runner import run_scan
    from scanner.services import scan_create

    folder = market_dir()
    real = DataSource("parquet", str(folder / "prices.parquet"), str(folder / "constituents.csv"))
    demo = DataSource("demo")
    config = ScanConfig()

    def in_process(source: DataSource, repeats: int) -> float:
        provider_for(source).instruments()  # loaded once, as in a long-running process
        return _median_seconds(lambda: run_scan(config, provider_for(source), ProgressTracker("bench")), repeats)

    def distributed(source: DataSource, batch_size: int, repeats: int = REPEATS, cold: bool = True) -> float:
        def once() -> float:
            if cold:
                cache.clear()
            t0 = time.time()
            scan = scan_create(owner=None, config=config, source=source, batch_size=batch_size)
            return float(completed_scan(scan.id).finished_at.timestamp() - t0)

        once()  # warm-up: each worker process loads the provider once, as in production
        return statistics.median(once() for _ in range(repeats))

    def floor(source: DataSource, repeats: int = REPEATS, compute_only: bool = False) -> float:
        pair = _Floor(source, config, compute_only)
        try:
            return statistics.median(pair.round() for _ in range(repeats))
        finally:
            pair.close()

    default = settings.TECHNIC_BATCH_SIZE
    local_505, local_5000 = in_process(real, REPEATS_505), in_process(demo, REPEATS)
    floor_505, floor_5000 = floor(real, REPEATS_505), floor(demo)
    compute_505, compute_5000 = floor(real, REPEATS_505, compute_only=True), floor(demo, compute_only=True)
    dist_505, dist_5000 = distributed(real, default, REPEATS_505), distributed(demo, default)
    warm_505 = distributed(real, default, REPEATS_505, cold=False)
    warm_5000 = distributed(demo, default, cold=False)
    batch1_505 = distributed(real, 1, repeats=1)
    sweep = {size: round(distributed(demo, size, repeats=1) / local_5000, 3) for size in SWEEP}
    return {
        "default_batch_size": default,
        "inprocess_505_seconds": round(local_505, 3),
        "distributed_505_seconds": round(dist_505, 3),
        "ratio_505": round(dist_505 / local_505, 3),
        "floor_505_seconds": round(floor_505, 3),
        "floor_ratio_505": round(floor_505 / local_505, 3),
        "compute_only_floor_ratio_505": round(compute_505 / local_505, 3),
        "batch1_distributed_505_seconds": round(batch1_505, 3),
        "batch1_ratio_505": round(batch1_505 / local_505, 3),
        "inprocess_5000_seconds": round(local_5000, 3),
        "distributed_5000_seconds": round(dist_5000, 3),
        "ratio_5000": round(dist_5000 / local_5000, 3),
        "floor_5000_seconds": round(floor_5000, 3),
        "floor_ratio_5000": round(floor_5000 / local_5000, 3),
        "compute_only_floor_ratio_5000": round(compute_5000 / local_5000, 3),
        "ratio_5000_by_batch_size": sweep,
        "distributed_505_warm_cache_seconds": round(warm_505, 3),
        "ratio_505_warm_cache": round(warm_505 / local_505, 3),
        "distributed_5000_warm_cache_seconds": round(warm_5000, 3),
        "ratio_5000_warm_cache": round(warm_5000 / local_5000, 3),
    }


class _Floor:
    """Two long-lived processes doing the work a cold distributed scan cannot leave out, and
    nothing else: no Celery, no progress, no stage bookkeeping, no waiting between tasks.

    Each round, each process takes half the universe, puts its bars into the price cache
    (``market.cache.fill``, as the data stage does) and, once both have (the stage boundary), reads
    them back, scans them and writes their rows (``record_outcomes``), as ``scan_batch`` does.
    With ``compute_only`` each process only gets its bars from the provider and scans them: the
    in-process scan's own work split over the two cores. The processes are forked with the
    provider loaded and warmed up by one round, as workers are by their first scan."""

    def __init__(self, source: Any, config: Any, compute_only: bool = False) -> None:
        from django.db import connections

        from market.sources import provider_for
        from scanner.steps import load_universe

        self.source, self.config, self.compute_only = source, config, compute_only
        self.provider = provider_for(source)
        self.instruments, self.as_of = load_universe(self.provider, config)
        context = multiprocessing.get_context("fork")
        self.start, self.fetched = context.Barrier(3, timeout=600), context.Barrier(2, timeout=600)
        self.finished = context.Queue()
        middle = len(self.instruments) // 2
        self.orders = [context.Queue(), context.Queue()]
        connections.close_all()  # each process opens its own
        self.processes = [
            context.Process(target=self._serve, args=(orders, part), daemon=True)
            for orders, part in zip(self.orders, (self.instruments[:middle], self.instruments[middle:]), strict=True)
        ]
        for process in self.processes:
            process.start()
        self.round()

    def round(self) -> float:
        """One cold scan's worth of that work: seconds from the start until both are done."""
        from market import cache
        from scanner import services

        with mock.patch.object(services.transaction, "on_commit", lambda _: None):  # a row, not a workflow
            scan = services.scan_create(owner=None, config=self.config, source=self.source)
        cache.clear()
        for orders in self.orders:
            orders.put(str(scan.id))
        self.start.wait()
        t0 = time.perf_counter()
        ends: list[float] = []
        while len(ends) < len(self.processes):
            try:
                ends.append(self.finished.get(timeout=1))
            except queue.Empty:
                if not all(process.is_alive() for process in self.processes):
                    sys.exit("a floor process died (its traceback is above)")
        return max(ends) - t0

    def close(self) -> None:
        for orders in self.orders:
            orders.put(None)
        for process in self.processes:
            process.join(30)

    def _serve(self, orders: Any, part: list[Any]) -> None:
        from engine.scan import scan_batch
        from market import cache
        from market.sources import FETCH_CHUNK
        from scanner import lifecycle
        from scanner.steps import fetch_bars

        namespace, lookback = self.source.cache_namespace(), self.config.lookback_days
        symbols = [i.symbol for i in part]
        while (scan_id := orders.get()) is not None:
            self.start.wait()
            if self.compute_only:
                scan_batch(
                    part,
                    fetch_bars(self.provider, symbols, self.as_of, lookback)[0],
                    self.config,
                    self.as_of,
                    self.provider.calendar(),
                )
                self.finished.put(time.perf_counter())
                continue
            for at in range(0, len(symbols), FETCH_CHUNK):
                cache.fill(self.provider, namespace, self.as_of, lookback, symbols[at : at + FETCH_CHUNK])
            self.fetched.wait()
            bars, missed = cache.get_bars(namespace, self.as_of, lookback, symbols)
            if missed:
                sys.exit(f"{len(missed)} symbols' bars were not in the cache")
            out = scan_batch(part, bars, self.config, self.as_of, self.provider.calendar())
            lifecycle.record_outcomes(scan_id, out.rows, out.skipped)
            self.finished.put(time.perf_counter())  # CLOCK_MONOTONIC: one clock for all processes


if __name__ == "__main__":
    main()
