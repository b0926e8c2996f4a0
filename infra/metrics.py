"""Recording Prometheus metrics, correct however many worker processes and machines there are.

Workers and web processes record events into one Redis hash (``<prefix>:metrics``) with
HINCRBY / HINCRBYFLOAT, so every process on every machine adds to the same counters and
histogram buckets (``technic_project.metrics`` renders them for ``GET /metrics``). Nothing is
kept in process memory, so a restarted or extra process neither loses nor double-counts anything.

Recording never breaks a scan: a Redis failure while recording is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from django.conf import settings

from infra.redis_client import main_redis

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


def recorded() -> dict[str, str]:
    """Everything recorded so far, field by field. Raises redis errors (the reader decides)."""
    return {_text(k): _text(v) for k, v in main_redis().hgetall(_key()).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
