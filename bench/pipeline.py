"""End-to-end scan time through the workers (enqueue → completed) against the in-process scan.

Sets up its own redis-server, a SQLite database and one worker with two processes, then on
the 505 real symbols and on 5,000 synthetic ones measures, in the same run:

* in-process: ``run_scan`` (what ``manage.py scan`` does) with the provider already loaded;
* distributed: ``scan_create`` → status ``completed``, with the price cache emptied first
  (``ratio_*``: the data stage fetches every symbol), at the default batch size, at batch
  size 1 (505 only) and at a sweep of batch sizes;
* distributed with the price cache already holding the bars (``ratio_*_warm_cache``), as
  for a second scan of the same data within the cache's lifetime.

Ratios are distributed / in-process, medians of REPEATS runs (REPEATS_505 at 505 symbols, where
one scan takes a tenth of a second and single runs vary by a third). Targets: ratio_505 <= 1.5,
ratio_5000 <= 0.7. Also reports the workers' peak memory.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import django_with_own_redis, market_dir, report

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
    from tests.processes import Workers

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

    from cache_admin import store as cache
    from progress.tracker import ProgressTracker
    from scanner.engine.config import ScanConfig
    from scanner.models import TERMINAL_STATUSES, Scan
    from scanner.runner import run_scan
    from scanner.services import scan_create
    from scanner.sources import DataSource, provider_for

    folder = market_dir()
    real = DataSource("parquet", str(folder / "prices.parquet"), str(folder / "constituents.csv"))
    demo = DataSource("demo")
    config = ScanConfig()

    def in_process(source: DataSource, repeats: int) -> float:
        provider_for(source).instruments()  # loaded once, as in a long-running process
        return _median_seconds(lambda: run_scan(config, provider_for(source), ProgressTracker("bench")), repeats)

    def distributed(source: DataSource, batch_size: int, repeats: int = REPEATS, cold: bool = True) -> float:
        def once() -> None:
            if cold:
                cache.clear()
            scan = scan_create(owner=None, config=config, source=source, batch_size=batch_size)
            while (status := Scan.objects.values_list("status", flat=True).get(id=scan.id)) not in TERMINAL_STATUSES:
                time.sleep(0.02)
            if status != "completed":
                sys.exit(f"scan {scan.id} ended {status}")

        once()  # warm-up: each worker process loads the provider once, as in production
        return _median_seconds(once, repeats)

    default = settings.TECHNIC_BATCH_SIZE
    local_505, local_5000 = in_process(real, REPEATS_505), in_process(demo, REPEATS)
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
        "batch1_distributed_505_seconds": round(batch1_505, 3),
        "batch1_ratio_505": round(batch1_505 / local_505, 3),
        "inprocess_5000_seconds": round(local_5000, 3),
        "distributed_5000_seconds": round(dist_5000, 3),
        "ratio_5000": round(dist_5000 / local_5000, 3),
        "ratio_5000_by_batch_size": sweep,
        "distributed_505_warm_cache_seconds": round(warm_505, 3),
        "ratio_505_warm_cache": round(warm_505 / local_505, 3),
        "distributed_5000_warm_cache_seconds": round(warm_5000, 3),
        "ratio_5000_warm_cache": round(warm_5000 / local_5000, 3),
    }


if __name__ == "__main__":
    main()
