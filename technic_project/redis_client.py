"""One Redis connection pool per process and URL."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


@cache
def _client(url: str, retries: bool = True) -> redis.Redis:
    options: dict[str, Any] = {} if retries else {"retry": Retry(NoBackoff(), 0)}
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30, **options)


def int_hash(raw: dict[Any, Any]) -> dict[str, int]:
    """An HGETALL answer of integer counters as ``{name: value}``."""
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}


def main_redis() -> redis.Redis:
    """The Redis of REDIS_URL: broker, results, channels and progress."""
    return _client(settings.REDIS_URL)


def cache_redis() -> redis.Redis:
    """The Redis of CACHE_REDIS_URL: the price cache (may be a separate instance).

    No retries: a scan goes on uncached when the cache is down rather than wait for it."""
    return _client(settings.CACHE_REDIS_URL, retries=False)
