"""Where a cold scan of the 505 real symbols spends its time on the workers, stage by stage.

Sets up its own redis-server, a SQLite database and one worker with two processes, then runs
SCANS cold scans (price cache emptied first) after one warm-up, and reads each scan's row: the
time from enqueue (before ``scan_create``) to the first stage's start, each stage's seconds
(a stage runs from the previous one's end, see docs/workflow.md) and the whole scan to
``finished_at``. Prints min / median / max in milliseconds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import completed_scan, django_with_own_redis, market_dir, report

SCANS = 9


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="technic-bench-"))
    redis_server = django_with_own_redis(work, 500)
    from tests.support.processes import Workers

    workers = Workers(
        {"REDIS_URL": redis_server.url, "DATABASE_URL": os.environ["DATABASE_URL"]},
        work / "worker.log",
        app="technic_project",
    )
    try:
        workers.start()
        samples = [_scan() for _ in range(SCANS + 1)][1:]  # the first loads the data in each process
    finally:
        workers.stop()
        redis_server.stop()
    figures: dict[str, object] = {"symbols": 505, "scans": SCANS}
    for part in samples[0]:
        values = sorted(sample[part] for sample in samples)
        figures[f"{part}_ms"] = {
            "min": round(values[0], 1),
            "median": round(statistics.median(values), 1),
            "max": round(values[-1], 1),
        }
        print(f"{part:>18}: {values[0]:6.1f} / {statistics.median(values):6.1f} / {values[-1]:6.1f} ms")
    report("stages", figures)


def _scan() -> dict[str, float]:
    from engine.config import ScanConfig
    from market import cache
    from market.sources import DataSource
    from progress.tracker import STAGES
    from scanner.services import scan_create

    folder = market_dir()
    source = DataSource("parquet", str(folder / "prices.parquet"), str(folder / "constituents.csv"))
    cache.clear()
    t0 = time.time()
    scan = scan_create(owner=None, config=ScanConfig(), source=source)
    scan = completed_scan(scan.id)
    parts = {"until_first_stage": 1000.0 * (scan.universe_loading_started_at.timestamp() - t0)}
    for stage in STAGES:
        started, ended = getattr(scan, f"{stage}_started_at"), getattr(scan, f"{stage}_ended_at")
        parts[stage] = 1000.0 * (ended - started).total_seconds()
    parts["whole_scan"] = 1000.0 * (scan.finished_at.timestamp() - t0)
    return parts


if __name__ == "__main__":
    main()
