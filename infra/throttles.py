"""Rate limits: who a request comes from, and windows counted atomically in Redis.

``client_address`` is the peer address (``REMOTE_ADDR``); ``X-Forwarded-For`` counts only when
the peer is one of ``TECHNIC_TRUSTED_PROXIES``, and then the client is the rightmost hop that is
not a trusted proxy (the hops left of it are whatever the client chose to send).

The throttles keep DRF's rate syntax (``TECHNIC_THROTTLE_*``, e.g. ``30/min``) and count a
moving window per key with one Redis script (the ``limits`` library's), so concurrent requests
cannot all read "under the limit" before any of them is counted. While Redis cannot be reached
the windows are counted in this process instead (one warning per outage): each web process then
applies the limit on its own, and nothing answers 500 for it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import TYPE_CHECKING

import redis
from django.conf import settings
from django.http import HttpRequest
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry
from rest_framework import throttling

if TYPE_CHECKING:  # rest_framework.views imports the throttle classes named in the settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

# Errors meaning "Redis is not answering now" (BusyLoadingError, while it loads its append-only
# file, is a ConnectionError); anything else is a bug and propagates.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# After a failure Redis is tried again this long later; requests meanwhile count locally at once.
RETRY_REDIS_SECONDS = 5.0


def client_address(request: HttpRequest) -> str:
    """The address a request comes from (see the module docstring)."""
    peer = request.META.get("REMOTE_ADDR") or ""
    trusted: tuple[IPv4Network | IPv6Network, ...] = settings.TECHNIC_TRUSTED_PROXIES
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer  # every hop is a trusted proxy: the request began at one


def _is_trusted(address: str, trusted: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


class RateWindows:
    """Moving windows of hits per key, in Redis (``REDIS_URL``) or, while it is unreachable,
    in this process. Thread-safe."""

    def __init__(self, key_prefix: str | None = None) -> None:
        self._key_prefix = key_prefix
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._redis_down_until: float | None = None  # None while Redis answers

    def hit(self, key: str, limit: int, seconds: int) -> float | None:
        """Counts one hit on ``key``: None if it is within ``limit`` hits in ``seconds``, else
        the seconds until the window has room again (the hit is then not counted)."""
        item = RateLimitItemPerSecond(limit, seconds)
        down_until = self._redis_down_until
        if down_until is None or time.monotonic() >= down_until:
            limiter = _redis_limiter(settings.REDIS_URL, self._key_prefix or f"{settings.TECHNIC_KEY_PREFIX}:throttle")
            try:
                wait = self._count(limiter, item, key)
            except REDIS_DOWN as err:
                self._redis_failed(err)
            else:
                self._redis_answered()
                return wait
        return self._count(self._local, item, key)

    @staticmethod
    def _count(limiter: MovingWindowRateLimiter, item: RateLimitItemPerSecond, key: str) -> float | None:
        if limiter.hit(item, key):
            return None
        return max(0.0, limiter.get_window_stats(item, key).reset_time - time.time())

    def _redis_failed(self, err: Exception) -> None:
        with self._lock:
            if self._redis_down_until is None:
                logger.warning("rate limits counted in this process only: Redis is unreachable (%s)", err)
            self._redis_down_until = time.monotonic() + RETRY_REDIS_SECONDS

    def _redis_answered(self) -> None:
        if self._redis_down_until is None:
            return
        with self._lock:
            if self._redis_down_until is not None:
                logger.warning("rate limits counted in Redis again")
            self._redis_down_until = None


@functools.cache
def _redis_limiter(url: str, key_prefix: str) -> MovingWindowRateLimiter:
    # No retries and short timeouts: a request waits at most this long before counting locally.
    pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    return MovingWindowRateLimiter(RedisStorage(url, connection_pool=pool, key_prefix=key_prefix))


class WindowThrottle(throttling.SimpleRateThrottle):
    """DRF's throttle contract, counted by ``windows`` and keyed on ``client_address``."""

    windows = RateWindows()  # shared by every throttle of the process; tests swap it
    retry_after: float | None = None
    num_requests: int  # set by SimpleRateThrottle from the rate
    duration: int

    def get_ident(self, request: Request) -> str:
        return client_address(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.retry_after = self.windows.hit(self.key, self.num_requests, self.duration)
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after


class AnonThrottle(throttling.AnonRateThrottle, WindowThrottle):
    """Anonymous requests, per client address (rate ``anon``)."""


class UserThrottle(throttling.UserRateThrottle, WindowThrottle):
    """Authenticated requests per user, anonymous ones per client address (rate ``user``)."""


class ScopeThrottle(throttling.ScopedRateThrottle, WindowThrottle):
    """Requests to views of one ``throttle_scope``, per user or client address."""
