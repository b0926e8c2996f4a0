"""Health endpoints for probes and operators, and ``GET /metrics``.

* ``/health``: liveness, the process answers; touches no dependency.
* ``/health/ready``: 200 when the database, Redis and the broker answer, else 503 naming the
  failing ones (a load balancer stops sending traffic; nothing restarts).
* ``/health/detailed``: each component with its status and details: database, redis, broker,
  Celery workers (a ping with a short timeout), the data provider (with a remote provider's
  circuit breaker and request counts), the price cache with its badge. Overall ``unhealthy``
  (503) when the database, Redis or the broker is down; ``degraded`` when no worker answers, the
  cache is unavailable or the provider cannot be used (its circuit breaker is open); otherwise
  ``healthy``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerError

from cache_admin.stats import cache_stats
from scanner.providers import DataProviderError, DataSourceError
from scanner.sources import DataSource, provider_calls, provider_for
from technic_project import metrics
from technic_project.celery import app
from technic_project.errors import error_body
from technic_project.redis_client import main_redis

PING_TIMEOUT_SECONDS = 1.0
CRITICAL = ("database", "redis", "broker")


def _timed(check: Callable[[], dict[str, Any] | None], failures: tuple[type[Exception], ...]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = check() or {}
    except failures as err:
        return {"status": "down", "error": f"{type(err).__name__}: {err}"}
    return {"status": "up", "ms": round(1000 * (time.perf_counter() - started), 2), **details}


def _database() -> dict[str, Any]:
    def check() -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"vendor": connection.vendor}

    return _timed(check, (DatabaseError,))


def _redis() -> dict[str, Any]:
    return _timed(lambda: {"pong": bool(main_redis().ping())}, (redis.RedisError,))


def _broker() -> dict[str, Any]:
    def check() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    return _timed(check, (BrokerError, ConnectionError, OSError))


def _critical() -> dict[str, dict[str, Any]]:
    return {"database": _database(), "redis": _redis(), "broker": _broker()}


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process answers. Needs no dependency."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    components = _critical()
    down = [name for name, c in components.items() if c["status"] != "up"]
    body = {"status": "not_ready" if down else "ready", "down": down, "components": components}
    return JsonResponse(body, status=503 if down else 200)


def _workers() -> dict[str, Any]:
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT_SECONDS)
    except (BrokerError, redis.RedisError, OSError) as err:
        return {"status": "down", "error": f"{type(err).__name__}: {err}", "workers": []}
    names = sorted(name for reply in replies for name in reply)
    return {"status": "up" if names else "down", "workers": names, "count": len(names)}


def _provider() -> dict[str, Any]:
    source = DataSource.from_settings()

    def check() -> dict[str, Any]:
        provider = provider_for(source)
        # Local providers make no remote calls: their breaker is "not_applicable". A remote one's
        # shared breaker, rate limit and request counts are read from Redis (no remote call).
        return {"name": provider.name, "synthetic": provider.synthetic, **provider_calls(source)}

    component = {"name": source.provider, **_timed(check, (DataProviderError, DataSourceError, redis.RedisError))}
    breaker = component.get("circuit_breaker")
    if isinstance(breaker, dict) and breaker["state"] == "open":
        component.update(status="down", error="circuit breaker open: the provider failed repeatedly")
    return component


def detailed(request: HttpRequest) -> JsonResponse:
    components: dict[str, dict[str, Any]] = _critical()
    components["workers"] = _workers() if components["broker"]["status"] == "up" else {"status": "unknown"}
    components["data_provider"] = _provider()
    stats = cache_stats()
    components["cache"] = {
        "status": "up" if stats.available else "down",
        "badge": stats.status,
        "hit_rate": stats.hit_rate,
        "keys": stats.keys,
        **({"error": stats.error} if stats.error else {}),
    }
    down = [name for name, c in components.items() if c["status"] != "up"]
    overall = "unhealthy" if set(down) & set(CRITICAL) else "degraded" if down else "healthy"
    return JsonResponse(
        {"status": overall, "down": down, "components": components}, status=503 if overall == "unhealthy" else 200
    )


def prometheus(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format (see docs/operations.md for each metric)."""
    try:
        text = metrics.exposition()
    except redis.RedisError as err:
        body = error_body("METRICS_UNAVAILABLE", str(err), ["Check that the Redis at REDIS_URL is running"])
        return JsonResponse(body, status=503)
    return HttpResponse(text, content_type="text/plain; version=0.0.4; charset=utf-8")
