"""``GET /metrics``: what the processes recorded (``infra.metrics``), plus gauges read at scrape
time (active scans from the database, cache hits and misses from the cache's own counters), in
the Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from infra.metrics import ETA_BUCKETS, SCAN_BUCKETS, STAGE_BUCKETS, recorded
from market import cache
from progress.tracker import STAGES
from scanner.models import Scan, ScanStatus


class _Collector:
    """Renders the recorded hash and the scrape-time gauges."""

    def collect(self) -> Iterator[Metric]:
        raw = recorded()
        started = CounterMetricFamily("technic_scans_started", "Scans started (created and enqueued).")
        started.add_metric([], float(raw.get("scans_started", 0)))
        yield started
        finished = CounterMetricFamily("technic_scans_finished", "Scans finished, by final status.", labels=["status"])
        for status in ("completed", "cancelled", "failed"):
            finished.add_metric([status], float(raw.get(f"scans_finished:{status}", 0)))
        yield finished
        errors = CounterMetricFamily("technic_scan_errors", "Failed scans by error code.", labels=["code"])
        for field, value in raw.items():
            if field.startswith("errors:"):
                errors.add_metric([field.split(":", 1)[1]], float(value))
        yield errors
        symbols = CounterMetricFamily("technic_symbols_scanned", "Symbols that reached an outcome in a scan.")
        symbols.add_metric([], float(raw.get("symbols_scanned", 0)))
        yield symbols
        yield self._histogram(
            raw, "technic_scan_duration_seconds", "Scan duration, start to end.", "scan_seconds", SCAN_BUCKETS
        )
        stages = HistogramMetricFamily("technic_stage_duration_seconds", "Duration of each stage.", labels=["stage"])
        for stage in STAGES:
            self._add(stages, raw, f"stage_seconds:{stage}", STAGE_BUCKETS, [stage])
        yield stages
        yield self._histogram(
            raw,
            "technic_eta_error_seconds",
            "Mean absolute error of a finished scan's overall ETA.",
            "eta_error_seconds",
            ETA_BUCKETS,
        )
        yield from self._gauges()

    def _histogram(
        self, raw: dict[str, str], name: str, doc: str, field: str, buckets: tuple[float, ...]
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc)
        self._add(family, raw, field, buckets, [])
        return family

    @staticmethod
    def _add(
        family: HistogramMetricFamily, raw: dict[str, str], field: str, buckets: tuple[float, ...], labels: list[str]
    ) -> None:
        count = float(raw.get(f"{field}:count", 0))
        cumulative = [(str(float(b)), float(raw.get(f"{field}:bucket:{b}", 0))) for b in buckets]
        family.add_metric(labels, [*cumulative, ("+Inf", count)], float(raw.get(f"{field}:sum", 0)))

    @staticmethod
    def _gauges() -> Iterator[Metric]:
        active = GaugeMetricFamily("technic_scans_active", "Scans pending or running now.", labels=["status"])
        for status in (ScanStatus.PENDING, ScanStatus.RUNNING):
            active.add_metric([str(status)], float(Scan.objects.filter(status=status).count()))
        yield active
        up = GaugeMetricFamily("technic_cache_up", "1 when the price cache's Redis answers.")
        try:
            counts = cache.counters()
        except cache.CacheUnavailable:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        hits = CounterMetricFamily("technic_cache_hits", "Price-cache hits (application counters).", labels=["kind"])
        misses = CounterMetricFamily("technic_cache_misses", "Price-cache misses.", labels=["kind"])
        for kind, figures in counts.items():
            hits.add_metric([kind], float(figures["hits"]))
            misses.add_metric([kind], float(figures["misses"]))
        yield hits
        yield misses


def exposition() -> bytes:
    """The metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)
