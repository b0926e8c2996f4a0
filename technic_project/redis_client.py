"""One Redis connection pool per process and URL."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from django.conf import settings


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


def int_hash(raw: dict[Any, Any]) -> dict[str, int]:
    """An HGETALL answer of integer counters as ``{name: value}``."""
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}


def main_redis() -> redis.Redis:
    """The Redis of REDIS_URL: broker, results, channels and progress."""
    return _client(settings.REDIS_URL)


def cache_redis() -> redis.Redis:
    """The Redis of CACHE_REDIS_URL: the price cache (may be a separate instance)."""
    return _client(settings.CACHE_REDIS_URL)
