"""Health endpoints for probes and operators, and ``GET /metrics``.

* ``/health``: liveness, the process answers; touches no dependency.
* ``/health/ready``: 200 when the database takes a write (inserted and rolled back), Redis
  answers and the broker accepts a connection, else 503 with ``down`` naming the failing ones (a
  load balancer stops sending traffic; nothing restarts). Statuses only, for anyone.
* ``/health/detailed``: each component with its status: database, redis, broker, Celery
  workers, the data provider, the market data store (from the database: symbols, bars, first
  and last stored day), the price cache. Overall ``unhealthy`` (503) when the database,
  Redis or the broker is down; ``degraded`` when no worker answers, the cache is unavailable,
  the provider cannot be used (its circuit breaker is open) or the store cannot be read;
  otherwise ``healthy``. Anonymous callers get the statuses only; staff sessions and ``Authorization: Bearer
  <TECHNIC_METRICS_TOKEN>`` also get the details (worker names, timings, error text, the
  provider's request counts, the cache's hit rate).
* ``/metrics``: Prometheus text, for staff sessions and the bearer token only.

Every check is bounded in time and holds nothing the application shares. The broker and
worker checks open a connection of their own (never one of the app's pool: a ping through the
pool takes a second connection for its producer while holding the first, so a crowd of
requests deadlocks the pool and then every scan start). The worker ping runs at most once per
``WORKERS_FRESH_SECONDS`` in a process; requests meanwhile read its last answer.
"""

from __future__ import annotations

import functools
import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError
from kombu.pidbox import Mailbox

from cache_admin.services import marketdata_status
from infra.errors import error_body
from infra.redis_client import main_redis
from market.providers import DataProviderError, DataSourceError
from market.sources import DataSource, provider_calls, provider_for
from market.stats import cache_stats
from technic_project import metrics
from technic_project.celery import app

PING_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 5.0
DATABASE_TIMEOUT_MS = 2000
WORKERS_FRESH_SECONDS = 5.0
CRITICAL = ("database", "redis", "broker")
WRITE_CHECK_APP = "technic.health"


def _timed(check: Callable[[], dict[str, Any] | None], failures: tuple[type[Exception], ...]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = check() or {}
    except failures as err:
        return {"status": "down", "error": f"{type(err).__name__}: {err}"}
    return {"status": "up", "ms": round(1000 * (time.perf_counter() - started), 2), **details}


def _database() -> dict[str, Any]:
    """A row inserted into ``django_migrations`` (present in every migrated database, no
    constraint a probe could trip) and rolled back: a read-only or locked database fails
    it where ``SELECT 1`` would pass."""

    def check() -> dict[str, Any]:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(DATABASE_TIMEOUT_MS)])
            MigrationRecorder(connection).migration_qs.create(app=WRITE_CHECK_APP, name="write check")
            transaction.set_rollback(True)
        return {"vendor": connection.vendor, "writable": True}

    return _timed(check, (DatabaseError,))


def _redis() -> dict[str, Any]:
    return _timed(lambda: {"pong": bool(main_redis().ping())}, (redis.RedisError,))


def _own_broker_connection() -> Connection:
    """A new broker connection with short socket timeouts, outside the app's pool."""
    timeouts = {"socket_connect_timeout": CONNECT_TIMEOUT_SECONDS, "socket_timeout": SOCKET_TIMEOUT_SECONDS}
    return app.connection_for_write(connect_timeout=CONNECT_TIMEOUT_SECONDS, transport_options=timeouts)


def _broker() -> dict[str, Any]:
    def check() -> None:
        with _own_broker_connection() as conn:
            conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_SECONDS)

    return _timed(check, (BrokerError, ConnectionError, OSError, redis.RedisError))


def _critical() -> dict[str, dict[str, Any]]:
    return {"database": _database(), "redis": _redis(), "broker": _broker()}


def _statuses(components: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"status": component["status"]} for name, component in components.items()}


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process answers. Needs no dependency."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    components = _critical()
    down = [name for name, c in components.items() if c["status"] != "up"]
    body = {"status": "not_ready" if down else "ready", "down": down, "components": _statuses(components)}
    return JsonResponse(body, status=503 if down else 200)


@functools.cache
def _mailbox() -> Mailbox:
    """Celery's control mailbox, except that it publishes on the connection it is bound to:
    Celery's own takes a producer, hence a second connection, from the app's pool."""
    conf = app.conf
    return Mailbox(
        conf.control_exchange,
        type="fanout",
        accept=conf.accept_content,
        serializer=conf.task_serializer,
        queue_ttl=conf.control_queue_ttl,
        reply_queue_ttl=conf.control_queue_ttl,
        queue_expires=conf.control_queue_expires,
        reply_queue_expires=conf.control_queue_expires,
    )


def _ping_workers() -> dict[str, Any]:
    try:
        with _own_broker_connection() as conn:
            conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_SECONDS)
            replies = _mailbox()(conn).multi_call("ping", timeout=PING_TIMEOUT_SECONDS)
    except (BrokerError, redis.RedisError, OSError) as err:
        return {"status": "down", "error": f"{type(err).__name__}: {err}", "workers": []}
    names = sorted(name for reply in replies for name in reply)
    return {"status": "up" if names else "down", "workers": names, "count": len(names)}


Ping = tuple[float, dict[str, Any]]  # (time.monotonic() of the ping, its answer)


class _WorkersCheck:
    """The last worker ping of this process, refreshed by one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Ping | None = None

    @staticmethod
    def _shown(ping: Ping) -> dict[str, Any]:
        return {**ping[1], "checked_seconds_ago": round(time.monotonic() - ping[0], 1)}

    def __call__(self) -> dict[str, Any]:
        last = self._last
        if last is not None and time.monotonic() - last[0] < WORKERS_FRESH_SECONDS:
            return self._shown(last)
        # With an answer to show, never wait for the request that is pinging; without one, wait
        # at most as long as its ping can take.
        if last is not None:
            acquired = self._lock.acquire(blocking=False)
        else:
            acquired = self._lock.acquire(timeout=CONNECT_TIMEOUT_SECONDS + SOCKET_TIMEOUT_SECONDS)
        if not acquired:
            return self._shown(last) if last else {"status": "unknown", "error": "the workers' ping is slow"}
        try:
            current = self._last
            if current is None or current is last:  # no other request pinged while this one waited
                current = self._last = (time.monotonic(), _ping_workers())
            return self._shown(current)
        finally:
            self._lock.release()


_workers = _WorkersCheck()


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


def _market_data() -> dict[str, Any]:
    return _timed(marketdata_status, (DatabaseError, DataProviderError))


def may_see_internals(request: HttpRequest) -> bool:
    """Whether the caller is a staff user (session) or sends ``Authorization: Bearer
    <TECHNIC_METRICS_TOKEN>`` (compared in constant time; no token configured matches nothing)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    expected: str = settings.TECHNIC_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)


def detailed(request: HttpRequest) -> JsonResponse:
    components: dict[str, dict[str, Any]] = _critical()
    components["workers"] = _workers() if components["broker"]["status"] == "up" else {"status": "unknown"}
    components["data_provider"] = _provider()
    components["market_data"] = _market_data()
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
    shown = components if may_see_internals(request) else _statuses(components)
    return JsonResponse(
        {"status": overall, "down": down, "components": shown}, status=503 if overall == "unhealthy" else 200
    )


def _metrics_refused(request: HttpRequest) -> JsonResponse:
    signed_in = getattr(request, "user", None) is not None and request.user.is_authenticated
    if not settings.TECHNIC_METRICS_TOKEN:
        suggestions = ["Sign in as a staff user", "Set TECHNIC_METRICS_TOKEN and scrape with that bearer token"]
    else:
        suggestions = ["Send 'Authorization: Bearer <TECHNIC_METRICS_TOKEN>'", "Or sign in as a staff user"]
    if signed_in:
        return JsonResponse(error_body("PERMISSION_DENIED", "Metrics are for staff.", suggestions), status=403)
    response = JsonResponse(
        error_body("NOT_AUTHENTICATED", "Metrics need the metrics token or a staff session.", suggestions), status=401
    )
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def prometheus(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format (see docs/operations.md for each metric), for
    staff sessions and ``Authorization: Bearer <TECHNIC_METRICS_TOKEN>``; 401 (403 for a
    signed-in user who is not staff) otherwise."""
    if not may_see_internals(request):
        return _metrics_refused(request)
    try:
        text = metrics.exposition()
    except redis.RedisError as err:
        body = error_body("METRICS_UNAVAILABLE", str(err), ["Check that the Redis at REDIS_URL is running"])
        return JsonResponse(body, status=503)
    return HttpResponse(text, content_type="text/plain; version=0.0.4; charset=utf-8")
