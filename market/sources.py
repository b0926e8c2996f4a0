"""Which market data a scan reads, and one provider instance per process for it.

A scan records its source (provider name and paths) so every worker builds the same
provider; building it once per process means a parquet file is read once, not per task.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings

from engine.config import ConfigError
from engine.types import Instrument
from infra.redis_client import main_redis
from market import cache
from market.providers import DataProviderError, MarketDataProvider, PolygonConfig, PolygonProvider, get_provider
from market.providers.resilience import Resilience, RetryPolicy, request_scope
from market.providers.state_stores import RedisStateStore
from market.store import StoredProvider

logger = logging.getLogger(__name__)

FETCH_CHUNK = 100
"""Symbols per provider call when a stage fetches bars: progress is reported after each."""


@dataclass(frozen=True)
class DataSource:
    provider: str
    data_path: str = ""
    universe_path: str = ""

    @classmethod
    def from_settings(cls) -> DataSource:
        return cls(
            settings.TECHNIC_DATA_PROVIDER, settings.TECHNIC_DATA_PATH or "", settings.TECHNIC_UNIVERSE_PATH or ""
        )

    def cache_namespace(self) -> str:
        """Names this data in cache keys; changes when a data file changes."""
        if self.provider == "demo":
            return f"demo-{settings.TECHNIC_DEMO_SYMBOLS}"
        digest = hashlib.sha1(usedforsecurity=False)
        if self.provider == "polygon":  # bars of a past as_of do not change: the endpoint names them
            digest.update(settings.POLYGON_BASE_URL.encode())
        for raw in (self.data_path, self.universe_path):
            path = Path(raw)
            digest.update(str(path.resolve()).encode())
            if path.is_file():
                stat = path.stat()
                digest.update(f"{stat.st_mtime_ns}:{stat.st_size}".encode())
        return f"{self.provider}-{digest.hexdigest()[:12]}"


def provider_for(source: DataSource) -> MarketDataProvider:
    """The process-wide provider for ``source`` (raises DataProviderError if unusable): a remote
    one is served through the market data store (``market.store``)."""
    if source.provider == "polygon":
        return _stored(source, polygon_config(), _resilience_settings(), settings.REDIS_URL)
    return _provider(source, settings.TECHNIC_DEMO_SYMBOLS)


def stored_provider(source: DataSource) -> StoredProvider:
    """The store-backed provider of a remote ``source``; raises DataProviderError for a local one
    (files and demo read their own data and keep no store)."""
    provider = provider_for(source)
    if not isinstance(provider, StoredProvider):
        raise DataProviderError(f"the {source.provider} provider reads local data and keeps no market data store")
    return provider


@functools.cache
def _stored(source: DataSource, config: PolygonConfig, knobs: tuple[Any, ...], redis_url: str) -> StoredProvider:
    return StoredProvider(_polygon(source, config, knobs, redis_url), f"polygon:{config.base_url.rstrip('/')}")


def polygon_config() -> PolygonConfig:
    """The polygon provider's settings (raises DataProviderError without an API key)."""
    return PolygonConfig(
        api_key=settings.POLYGON_API_KEY,
        base_url=settings.POLYGON_BASE_URL,
        connect_timeout=settings.POLYGON_CONNECT_TIMEOUT,
        read_timeout=settings.POLYGON_READ_TIMEOUT,
        concurrency=settings.POLYGON_CONCURRENCY,
        calendar_ticker=settings.POLYGON_CALENDAR_TICKER,
        history_start=settings.POLYGON_HISTORY_START,
        strategy=settings.POLYGON_FETCH_STRATEGY,
    )


def _resilience_settings() -> tuple[Any, ...]:
    return (
        RetryPolicy(
            settings.POLYGON_MAX_RETRIES,
            settings.POLYGON_BACKOFF_BASE,
            settings.POLYGON_BACKOFF_MAX,
            settings.POLYGON_RETRY_AFTER_MAX,
        ),
        settings.POLYGON_RATE_LIMIT,
        settings.POLYGON_BREAKER_THRESHOLD,
        settings.POLYGON_BREAKER_COOLDOWN,
        settings.TECHNIC_KEY_PREFIX,
    )


@functools.cache
def _polygon(source: DataSource, config: PolygonConfig, knobs: tuple[Any, ...], redis_url: str) -> PolygonProvider:
    """One polygon provider per process and configuration; its breaker, rate limit and request
    counts live in the main Redis (``redis_url``), shared by every process."""
    policy, rate, threshold, cooldown, prefix = knobs
    resilience = Resilience.build(
        RedisStateStore(main_redis(), prefix, "polygon"),
        "Polygon",
        policy,
        rate=rate,
        threshold=threshold,
        cooldown=cooldown,
        # One probe may take the longest a request can: a rate-limit slot, connect and read.
        probe_ttl=config.connect_timeout + config.read_timeout + (1.0 / rate if rate > 0 else 0.0) + 1.0,
    )
    provider = get_provider("polygon", universe_path=source.universe_path or None, config=config, resilience=resilience)
    assert isinstance(provider, PolygonProvider)
    return provider


def scan_budget(total_symbols: int) -> int:
    """Most requests one scan may send to a remote provider."""
    return math.ceil(settings.POLYGON_SCAN_BUDGET_PER_SYMBOL * total_symbols) + 20


@contextlib.contextmanager
def provider_requests(source: DataSource, scan_id: Any, total_symbols: int) -> Iterator[None]:
    """Count the remote requests made inside under the scan (in Redis, so the count is right
    across workers) and stop at its budget; for local providers, nothing."""
    if source.provider != "polygon":
        yield
        return
    with request_scope(str(scan_id), scan_budget(total_symbols)):
        yield


def provider_calls(source: DataSource, scan_id: Any = None, total_symbols: int | None = None) -> dict[str, Any]:
    """The remote requests of a scan (or of every scan when ``scan_id`` is None) and the circuit
    breaker's state; ``{"circuit_breaker": "not_applicable"}`` for local providers."""
    if source.provider != "polygon":
        return {"circuit_breaker": "not_applicable"}
    provider = stored_provider(source).remote
    assert isinstance(provider, PolygonProvider)
    counts = provider.resilience.ledger.counts(None if scan_id is None else str(scan_id))
    calls: dict[str, Any] = {field: counts.get(field, 0) for field in ("requests", "retried", "throttled", "failed")}
    if total_symbols is not None:
        calls["budget"] = scan_budget(total_symbols)
    calls["rate_limit_per_second"] = provider.resilience.limiter.rate
    calls["circuit_breaker"] = provider.resilience.breaker.state()
    return calls


def instruments_for(source: DataSource) -> list[Instrument]:
    """The source's universe, read through the price cache (from the provider when the cache is down)."""
    return cache.universe(source.cache_namespace(), provider_for(source).instruments)


@functools.cache
def _provider(source: DataSource, demo_symbols: int) -> MarketDataProvider:
    if source.provider == "demo":
        return get_provider("demo", n_symbols=demo_symbols)
    return get_provider(source.provider, data_path=source.data_path or None, universe_path=source.universe_path or None)


def resolve_as_of(provider: MarketDataProvider, requested: date | None) -> date:
    """The scan date: the provider's last market date by default; outside the data is an error
    (a stored provider reads its calendar again for a day past its last one)."""
    first, last = provider.date_range(requested) if isinstance(provider, StoredProvider) else provider.date_range()
    if requested is None:
        return last
    if not first <= requested <= last:
        raise ConfigError(
            "as_of",
            f"as_of {requested.isoformat()} is outside the data ({first.isoformat()} to {last.isoformat()})",
            [last.isoformat()],
        )
    return requested
