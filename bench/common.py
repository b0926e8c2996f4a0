"""Shared benchmark plumbing: one-core setup, peak memory, and writing the results file."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def single_core() -> None:
    """Keep numeric libraries to one thread and, where allowed, pin this process to one CPU."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def market_dir() -> Path:
    path = Path(os.environ.get("TECHNIC_MARKET_DATA", ROOT.parent / "shared" / "data" / "market"))
    if not (path / "prices.parquet").is_file():
        sys.exit(f"real market data not found at {path}; set TECHNIC_MARKET_DATA")
    return path


def report(name: str, figures: dict[str, Any]) -> None:
    """Write figures to bench/results/<name>.json and print them as the last line of output."""
    figures = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures), flush=True)


# How often a benchmark looks for a scan's end. Scans are timed to the finish stamp their worker
# records, so this only sets how long the benchmark idles between scans; checking more often
# costs CPU the scan itself is using (every 5 ms it was about a quarter of a core).
POLL_SECONDS = 0.05


def completed_scan(scan_id: Any) -> Any:
    """The row of scan ``scan_id`` once it has ended; exits unless it completed. Time a scan to
    the row's ``finished_at`` (its worker's stamp), not to when this returns."""
    from scanner.models import TERMINAL_STATUSES, Scan

    while (status := Scan.objects.values_list("status", flat=True).get(id=scan_id)) not in TERMINAL_STATUSES:
        time.sleep(POLL_SECONDS)
    if status != "completed":
        sys.exit(f"scan {scan_id} ended {status}")
    return Scan.objects.get(id=scan_id)


def django_with_own_redis(
    work: Path, demo_symbols: int, appendonly: bool = False, database_url: str = "", cache_db: int = 0
) -> Any:
    """Environment for a benchmark in ``work``: a redis-server of its own (with an append-only
    file if ``appendonly``; the price cache in its database ``cache_db``), a database
    (``database_url``, else SQLite there), Django set up and migrated. Returns the started
    ``RedisServer`` (stop it at the end); the worker and web processes get the same variables
    from ``os.environ``."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "technic_project.settings",
            "DJANGO_SECRET_KEY": "bench",
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": database_url or f"sqlite:///{work / 'bench.sqlite3'}",
            "TECHNIC_DEMO_SYMBOLS": str(demo_symbols),
            "DJANGO_LOG_LEVEL": "WARNING",
        }
    )
    from tests.support.processes import RedisServer

    redis_server = RedisServer(work, appendonly=appendonly)
    redis_server.start()
    os.environ["REDIS_URL"] = redis_server.url
    os.environ["CACHE_REDIS_URL"] = redis_server.url.rsplit("/", 1)[0] + f"/{cache_db}"

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return redis_server
