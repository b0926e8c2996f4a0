"""Beat's tasks of the cache: the warmer (every TECHNIC_CACHE_WARM_INTERVAL, and on POST
/api/cache/warm) and the market data store's top-up after the close (TECHNIC_MARKETDATA_UPDATE_AT)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from celery import shared_task
from django.contrib.auth import get_user_model
from django.utils import timezone

from cache_admin.services import MarketDataInProgress, WarmInProgress, cache_warm, marketdata_update
from market import store
from market.sources import DataSource, provider_for

logger = logging.getLogger(__name__)


def _new_york_today() -> date:
    return timezone.localtime(timezone.now(), store.exchange_zone()).date()


def _user(user_id: int | None) -> Any:
    return get_user_model().objects.filter(id=user_id).first() if user_id is not None else None


@shared_task(name="cache_admin.tasks.warm_cache")
def warm_cache(user_id: int | None = None, via: str = "beat") -> dict[str, Any]:
    """Warm the default data source's cache. A run that finds another warmer at work does
    nothing (no stampede); a cache that is down fails the task (CacheUnavailable)."""
    try:
        return {"state": "warmed", **cache_warm(_user(user_id), via).as_dict()}
    except WarmInProgress as err:
        logger.info("cache warm skipped: %s", err)
        return {"state": "skipped", "reason": str(err)}


@shared_task(name="cache_admin.tasks.update_market_data")
def update_market_data(user_id: int | None = None, via: str = "beat", trading_days_only: bool = True) -> dict[str, Any]:
    """Top the market data store up for the default symbols, then warm the cache from it.

    Skipped (and said why) for a local provider, on a day the NYSE has no session
    (``trading_days_only``, beat's run) and while another update holds the lock."""
    source = DataSource.from_settings()
    if not isinstance(provider_for(source), store.StoredProvider):
        return {"state": "skipped", "reason": f"the {source.provider} provider reads local data and keeps no store"}
    today = _new_york_today()
    if trading_days_only and not store.trading_day(today):
        return {"state": "skipped", "reason": f"{today} is no NYSE session"}
    user = _user(user_id)
    try:
        report = marketdata_update(user, via, source=source)
    except MarketDataInProgress as err:
        logger.info("market data update skipped: %s", err)
        return {"state": "skipped", "reason": str(err)}
    result: dict[str, Any] = {"state": "updated" if not report.stopped else "stopped", **report.as_dict()}
    try:
        result["warm"] = cache_warm(user, via, source).as_dict()
    except WarmInProgress as err:
        result["warm"] = {"state": "skipped", "reason": str(err)}
    return result
