"""The benchmark of a scan on the workers: computed once from the price cache (or the provider)
by the first batch that needs it, and kept on the scan so every batch measures against the same."""

from __future__ import annotations

from django.conf import settings

from engine.screens.series import Benchmark
from engine.types import Bars
from market import cache
from market.providers.base import bars_and_failures
from market.sources import FETCH_CHUNK
from scanner.lifecycle import ScanContext, universe_of
from scanner.models import Scan
from scanner.steps import benchmark_from_json, benchmark_json, scan_benchmark


def scan_benchmark_of(scan: Scan, context: ScanContext) -> Benchmark:
    """The scan's benchmark (``steps.scan_benchmark``), stored on the scan the first time.
    Idempotent: two batches computing it at once compute the same one."""
    if scan.benchmark:
        return benchmark_from_json(scan.benchmark)
    assert scan.as_of is not None, "batches run after universe_loading fixed as_of"
    as_of, lookback = scan.as_of, context.config.lookback_days

    def universe_bars() -> dict[str, Bars]:
        symbols = [i.symbol for i in universe_of(Scan.objects.only("universe").get(id=scan.id))]
        out: dict[str, Bars] = {}
        for start in range(0, len(symbols), FETCH_CHUNK):
            chunk = symbols[start : start + FETCH_CHUNK]
            found, missed, _ = cache.read_bars(context.namespace, as_of, lookback, chunk)
            out.update(found)
            if missed:
                out.update(bars_and_failures(context.provider, missed, as_of, lookback)[0])
        return out

    benchmark = scan_benchmark(settings.TECHNIC_BENCHMARK, context.provider, as_of, lookback, universe_bars)
    data = benchmark_json(benchmark)
    Scan.objects.filter(id=scan.id).update(benchmark=data)
    scan.benchmark = data
    return benchmark
