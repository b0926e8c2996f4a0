"""The price cache's statistics, as the admin page and ``GET /api/cache/stats`` show them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from market import cache

EXCELLENT, GOOD = 80.0, 50.0


def badge(hit_rate: float | None) -> str:
    """excellent (hit rate ≥ 80 %), good (50-79 %), poor (< 50 %); idle before any lookup."""
    if hit_rate is None:
        return "idle"
    if hit_rate >= EXCELLENT:
        return "excellent"
    return "good" if hit_rate >= GOOD else "poor"


def _rate(hits: int, misses: int) -> float | None:
    return round(100.0 * hits / (hits + misses), 1) if hits + misses else None


@dataclass
class CacheStats:
    status: str  # excellent | good | poor | idle | unavailable
    available: bool
    url: str
    hits: int | None = None
    misses: int | None = None
    hit_rate: float | None = None
    keys: int | None = None
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # The fields the original dashboard reads, kept at the top level (PRODUCT.md).
    total_keys: int | None = None
    memory_used_mb: float | None = None
    keys_by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cache_stats() -> CacheStats:
    """Statistics of the cache; ``status`` is ``unavailable`` (with ``error``) when its Redis
    cannot be reached. Cost: a few O(1) or O(log n) commands, whatever the number of keys."""
    try:
        counts = cache.counters()
        keys = cache.key_counts()
        info = cache.server_info()
    except cache.CacheUnavailable as err:
        return CacheStats(status="unavailable", available=False, url=cache.safe_url(), error=str(err))
    hits = sum(c["hits"] for c in counts.values())
    misses = sum(c["misses"] for c in counts.values())
    by_kind = {kind: {**c, "hit_rate": _rate(c["hits"], c["misses"]), "keys": keys[kind]} for kind, c in counts.items()}
    return CacheStats(
        status=badge(_rate(hits, misses)),
        available=True,
        url=cache.safe_url(),
        hits=hits,
        misses=misses,
        hit_rate=_rate(hits, misses),
        keys=sum(keys.values()),
        total_keys=sum(keys.values()),
        keys_by_type=dict(keys),
        memory_used_mb=round(info["used_memory"] / 2**20, 2) if info.get("used_memory") is not None else None,
        by_kind=by_kind,
        memory={
            "used_bytes": info.get("used_memory"),
            "used_human": info.get("used_memory_human"),
            "peak_bytes": info.get("used_memory_peak"),
            "peak_human": info.get("used_memory_peak_human"),
            "fragmentation_ratio": info.get("mem_fragmentation_ratio"),
            "maxmemory_bytes": info.get("maxmemory"),
            "maxmemory_policy": info.get("maxmemory_policy"),
        },
        server={
            "redis_version": info.get("redis_version"),
            "uptime_seconds": info.get("uptime_in_seconds"),
            "connected_clients": info.get("connected_clients"),
            "evicted_keys": info.get("evicted_keys"),
            "expired_keys": info.get("expired_keys"),
            "ping_ms": info.get("ping_ms"),
        },
    )
