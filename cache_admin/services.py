"""Clearing and warming the price cache, topping up and backfilling the market data store; all
are audited (:class:`CacheAction`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from django.conf import settings

from cache_admin.models import CacheAction
from engine.config import ScanConfig
from engine.universe import select_universe
from market import cache, store, upkeep
from market.providers.resilience import request_scope
from market.sources import (
    FETCH_CHUNK,
    DataSource,
    instruments_for,
    provider_calls,
    provider_for,
    resolve_as_of,
    scan_budget,
    stored_provider,
)

logger = logging.getLogger(__name__)

WARM_LOCK_SECONDS = 900
MARKETDATA_LOCK_SECONDS = 6 * 3600


class WarmInProgress(Exception):
    """Another warmer holds the lock for this data source."""


class MarketDataInProgress(Exception):
    """Another update or backfill of the market data store holds the lock for this data source."""


def _audit(kind: str, user: Any, via: str, keys: int, seconds: float, detail: str = "") -> CacheAction:
    authenticated = user is not None and user.is_authenticated
    return CacheAction.objects.create(
        kind=kind,
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        via=via,
        keys=keys,
        seconds=round(seconds, 3),
        detail=detail[:500],
    )


def cache_clear(user: Any, via: str) -> CacheAction:
    """Remove every price-cache key (nothing outside its prefix) and audit it.

    Raises CacheUnavailable when the cache cannot be reached (nothing is audited then)."""
    started = time.perf_counter()
    removed = cache.clear()
    action = _audit(CacheAction.Kind.CLEAR, user, via, removed, time.perf_counter() - started)
    logger.info("price cache cleared by %s via %s: %d keys removed", action.username or via, via, removed)
    return action


@dataclass
class WarmReport:
    source: str
    as_of: str
    symbols: int
    refreshed: int
    fresh: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lock_name(source: DataSource) -> str:
    return f"warm:{source.cache_namespace()}"


def warm_running(source: DataSource | None = None) -> bool:
    return cache.locked(_lock_name(source or DataSource.from_settings()))


def cache_warm(user: Any = None, via: str = "beat", source: DataSource | None = None) -> WarmReport:
    """Keep the default scan's bars cached: the default universe plus the
    TECHNIC_CACHE_WARM_TOP most-scanned symbols, at the default ``as_of`` and lookback.

    A symbol is refreshed when its bars are absent or would expire before the next two warmer
    runs, so a scan on schedule never finds them gone. One warmer at a time per data source:
    raises WarmInProgress when another holds the lock; CacheUnavailable when the cache is down.
    """
    source = source or DataSource.from_settings()
    with cache.lock(_lock_name(source), WARM_LOCK_SECONDS) as acquired:
        if not acquired:
            raise WarmInProgress(f"a warmer is already running for {source.provider}")
        started = time.perf_counter()
        provider, namespace = provider_for(source), source.cache_namespace()
        config = ScanConfig()
        as_of = resolve_as_of(provider, config.as_of)
        instruments = select_universe(instruments_for(source), config)
        popular = cache.popular(namespace, settings.TECHNIC_CACHE_WARM_TOP)
        wanted = list(dict.fromkeys([i.symbol for i in instruments] + popular))
        horizon = 2 * settings.TECHNIC_CACHE_WARM_INTERVAL
        left = cache.remaining_seconds(namespace, as_of, config.lookback_days, wanted)
        stale = [s for s in wanted if left[s] < horizon]
        for start in range(0, len(stale), FETCH_CHUNK):
            chunk = stale[start : start + FETCH_CHUNK]
            cache.put_bars(namespace, as_of, config.lookback_days, provider.bars(chunk, as_of, config.lookback_days))
        seconds = time.perf_counter() - started
    report = WarmReport(source.provider, as_of.isoformat(), len(wanted), len(stale), len(wanted) - len(stale), seconds)
    _audit(CacheAction.Kind.WARM, user, via, len(stale), seconds, f"{len(wanted)} symbols as of {as_of}")
    logger.info("price cache warmed: %s", report)
    return report


Progress = Callable[[int, int], None]


def default_symbols(source: DataSource) -> list[str]:
    """What the store keeps current: the default universe and the symbols the warmer keeps
    cached (the most-scanned; none when the cache is down)."""
    instruments = select_universe(instruments_for(source), ScanConfig())
    try:
        popular = cache.popular(source.cache_namespace(), settings.TECHNIC_CACHE_WARM_TOP)
    except cache.CacheUnavailable:
        popular = []
    return list(dict.fromkeys([i.symbol for i in instruments] + popular))


def marketdata_update(
    user: Any = None,
    via: str = "beat",
    budget: int | None = None,
    on_progress: Progress | None = None,
    source: DataSource | None = None,
) -> upkeep.Report:
    """Top the market data store up to the latest closed market day for the default symbols
    (their default-lookback windows). ``budget``: most requests sent (default: a scan's)."""
    lookback = ScanConfig().lookback_days
    return _marketdata(
        CacheAction.Kind.UPDATE,
        source or DataSource.from_settings(),
        user,
        via,
        budget,
        lambda provider, symbols: upkeep.update(provider, symbols, lookback, on_progress=on_progress),
    )


def marketdata_backfill(
    since: date,
    user: Any = None,
    via: str = "cli",
    budget: int | None = None,
    on_progress: Progress | None = None,
    source: DataSource | None = None,
) -> upkeep.Report:
    """Fill the store from ``since`` to the latest market day for the default symbols, a chunk
    of symbols at a time. ``budget``: most requests sent (default: a scan's)."""
    return _marketdata(
        CacheAction.Kind.BACKFILL,
        source or DataSource.from_settings(),
        user,
        via,
        budget,
        lambda provider, symbols: upkeep.backfill(provider, symbols, since, on_progress=on_progress),
    )


def _marketdata(
    kind: str,
    source: DataSource,
    user: Any,
    via: str,
    budget: int | None,
    run: Callable[[store.StoredProvider, list[str]], upkeep.Report],
) -> upkeep.Report:
    """Run an update or backfill of the default symbols under the source's lock and a request
    budget, then audit it. Raises DataProviderError for a local provider (it keeps no store),
    MarketDataInProgress when another run holds the lock."""
    provider = stored_provider(source)
    symbols = default_symbols(source)
    scope = f"marketdata-{kind}-{uuid.uuid4().hex}"
    with store.lock(f"marketdata:{source.cache_namespace()}", MARKETDATA_LOCK_SECONDS) as acquired:
        if not acquired:
            raise MarketDataInProgress(f"an update or backfill of the {source.provider} market data is running")
        with request_scope(scope, scan_budget(len(symbols)) if budget is None else budget):
            report = run(provider, symbols)
    report.requests = provider_calls(source, scope)["requests"]
    detail = f"{report.done}/{report.symbols} symbols through {report.through}; {report.requests} requests"
    if report.failed:
        detail += f"; {len(report.failed)} failed"
    if report.stopped:
        detail += f"; stopped: {report.stopped}"
    _audit(kind, user, via, report.bars_written, report.seconds, detail)
    logger.info("market data %s: %s", kind, report.as_dict())
    return report


def marketdata_status(source: DataSource | None = None) -> dict[str, Any]:
    """The store's figures for ``source`` (database only): ``{"store": "not_applicable"}`` for a
    local provider, which reads its own data."""
    source = source or DataSource.from_settings()
    provider = provider_for(source)
    if not isinstance(provider, store.StoredProvider):
        return {"store": "not_applicable", "reason": f"the {source.provider} provider reads local data"}
    return upkeep.summary(provider.store.key)
