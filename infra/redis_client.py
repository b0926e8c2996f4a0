"""One Redis connection pool per process and URL.

A web process's clients give up after redis-py's few quick retries (the request answers at
once). A worker's wait out a Redis restart: ``technic_project.celery`` calls ``ride_out_outages``
when a worker starts, and from then on a command whose connection dropped, whose reconnect was
refused or that met a server still loading its data is retried with backoff for about
TECHNIC_REDIS_OUTAGE_SECONDS, inside the task, without the broker.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

# Waits between attempts: 0.1 s, doubling, at most BACKOFF_CAP seconds.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0

_outage_retry: Retry | None = None


def outage_retry(seconds: float) -> Retry:
    """A redis-py retry policy that reconnects with exponential backoff for about ``seconds``
    (ConnectionError, which includes BusyLoadingError, and TimeoutError)."""
    return Retry(ExponentialBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE), math.ceil(seconds / BACKOFF_CAP) + 5)


def ride_out_outages(seconds: float) -> Retry:
    """Make this process's clients (created from now on) retry for about ``seconds`` when Redis
    is unreachable. Returns the policy, for clients this module does not own."""
    global _outage_retry
    _outage_retry = outage_retry(seconds)
    _client.cache_clear()
    return _outage_retry


def outage_retry_in_force() -> Retry | None:
    """The policy ``ride_out_outages`` set in this process, if any (for the broker transport)."""
    return _outage_retry


@cache
def _client(url: str, retries: bool = True) -> redis.Redis:
    options: dict[str, Any] = {}
    if not retries:
        options["retry"] = Retry(NoBackoff(), 0)
    elif _outage_retry is not None:
        options["retry"] = _outage_retry
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
