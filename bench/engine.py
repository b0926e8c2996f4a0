"""Engine throughput on one core and peak memory.

* real: the 505 real S&P 500 symbols with their full 1,259-bar histories;
* synthetic: 5,000 demo symbols with 1,259-bar windows, generated and scanned in chunks.

Only ``scan_batch`` (validation, indicators, scores, plans, rows) is timed; reading or
generating bars is not. Each part runs in its own process so its peak memory is its own.
Targets: >= 1,500 real symbols/s on one core; < 500 MB peak for 5,000 symbols.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import date
from typing import Any

from bench.common import market_dir, peak_rss_mb, report, single_core

LOOKBACK = 1259
REPEATS = 3
SYNTHETIC_SYMBOLS = 5000
SYNTHETIC_CHUNK = 500


def _real() -> dict[str, Any]:
    single_core()
    from engine.config import ScanConfig
    from engine.scan import scan_batch
    from market.providers.files import FileProvider

    folder = market_dir()
    provider = FileProvider("parquet", folder / "prices.parquet", folder / "constituents.csv")
    instruments = provider.instruments()
    as_of = provider.date_range()[1]
    bars = provider.bars([i.symbol for i in instruments], as_of, LOOKBACK)
    config = ScanConfig(lookback_days=LOOKBACK)
    calendar = provider.calendar()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = scan_batch(instruments, bars, config, as_of, calendar)
        best = min(best, time.perf_counter() - t0)
    return {
        "real_symbols": len(instruments),
        "real_rows": len(out.rows),
        "real_seconds": round(best, 4),
        "real_symbols_per_second": round(len(instruments) / best, 1),
        "real_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _synthetic() -> dict[str, Any]:
    single_core()
    from engine.config import ScanConfig
    from engine.scan import scan_batch
    from market.providers.demo import DemoProvider

    provider = DemoProvider(n_symbols=SYNTHETIC_SYMBOLS)
    instruments = provider.instruments()
    as_of: date = provider.date_range()[1]
    calendar = provider.calendar()
    config = ScanConfig(lookback_days=LOOKBACK)
    engine_seconds = 0.0
    rows = 0
    for start in range(0, len(instruments), SYNTHETIC_CHUNK):
        chunk = instruments[start : start + SYNTHETIC_CHUNK]
        bars = provider.bars([i.symbol for i in chunk], as_of, LOOKBACK)
        t0 = time.perf_counter()
        out = scan_batch(chunk, bars, config, as_of, calendar)
        engine_seconds += time.perf_counter() - t0
        rows += len(out.rows)
        del bars, out
    return {
        "synthetic_symbols": len(instruments),
        "synthetic_rows": rows,
        "synthetic_seconds": round(engine_seconds, 4),
        "synthetic_symbols_per_second": round(len(instruments) / engine_seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _in_child(func: Any) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func)


def main() -> None:
    figures = {**_in_child(_real), **_in_child(_synthetic)}
    figures["targets"] = {"real_symbols_per_second": ">= 1500", "peak_rss_mb": "< 500"}
    for key, value in figures.items():
        print(f"{key:>30}: {value}")
    report("engine", figures)


if __name__ == "__main__":
    main()
