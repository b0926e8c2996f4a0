"""Prometheus metrics, correct however many worker processes and machines there are.

Workers and web processes record events into one Redis hash (``<prefix>:metrics``) with
HINCRBY / HINCRBYFLOAT, so every process on every machine adds to the same counters and
histogram buckets; ``GET /metrics`` renders that hash, plus gauges read at scrape time (active
scans from the database, cache hits and misses from the cache's own counters), in the
Prometheus text format. Nothing is kept in process memory, so a restarted or extra process
neither loses nor double-counts anything.

Recording never breaks a scan: a Redis failure while recording is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from cache_admin import store
from progress.tracker import STAGES
from scanner.models import Scan, ScanStatus
from technic_project.redis_client import main_redis

logger = logging.getLogger(__name__)

SCAN_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
ETA_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


def _key() -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:metrics"


def _observe(pipe: Any, name: str, value: float, buckets: tuple[float, ...]) -> None:
    for bound in buckets:
        if value <= bound:
            pipe.hincrby(_key(), f"{name}:bucket:{bound}", 1)
    pipe.hincrby(_key(), f"{name}:count", 1)
    pipe.hincrbyfloat(_key(), f"{name}:sum", value)


def _record(fill: Any) -> None:
    try:
        pipe = main_redis().pipeline(transaction=False)
        fill(pipe)
        pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as err:
        logger.warning("metrics not recorded (Redis unreachable): %s", err)


def scan_started() -> None:
    _record(lambda pipe: pipe.hincrby(_key(), "scans_started", 1))


def scan_finished(status: str, metrics: Mapping[str, Any], error_code: str = "") -> None:
    """One finished scan: its status, durations, symbols, error code and ETA error."""

    def fill(pipe: Any) -> None:
        pipe.hincrby(_key(), f"scans_finished:{status}", 1)
        if error_code:
            pipe.hincrby(_key(), f"errors:{error_code}", 1)
        if metrics.get("elapsed_seconds") is not None:
            _observe(pipe, "scan_seconds", float(metrics["elapsed_seconds"]), SCAN_BUCKETS)
        for stage, seconds in (metrics.get("stage_seconds") or {}).items():
            if seconds is not None:
                _observe(pipe, f"stage_seconds:{stage}", float(seconds), STAGE_BUCKETS)
        scanned = metrics.get("scanned_symbols")
        if scanned:
            pipe.hincrby(_key(), "symbols_scanned", int(scanned))
        eta = (metrics.get("eta_accuracy") or {}).get("overall", {}).get("mean_abs_error_seconds")
        if eta is not None:
            _observe(pipe, "eta_error_seconds", float(eta), ETA_BUCKETS)

    _record(fill)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Collector:
    """Renders the recorded hash and the scrape-time gauges."""

    def collect(self) -> Iterator[Metric]:
        raw = {_text(k): _text(v) for k, v in main_redis().hgetall(_key()).items()}
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
            counts = store.counters()
        except store.CacheUnavailable:
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
