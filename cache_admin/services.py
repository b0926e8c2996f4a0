"""Clearing and warming the price cache; both are audited (:class:`CacheAction`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

from cache_admin.models import CacheAction
from engine.config import ScanConfig
from engine.universe import select_universe
from market import cache
from market.sources import FETCH_CHUNK, DataSource, instruments_for, provider_for, resolve_as_of

logger = logging.getLogger(__name__)

WARM_LOCK_SECONDS = 900


class WarmInProgress(Exception):
    """Another warmer holds the lock for this data source."""


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
