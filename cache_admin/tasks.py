"""The cache warmer, run by beat every TECHNIC_CACHE_WARM_INTERVAL and by POST /api/cache/warm."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.contrib.auth import get_user_model

from cache_admin.services import WarmInProgress, cache_warm

logger = logging.getLogger(__name__)


@shared_task(name="cache_admin.tasks.warm_cache")
def warm_cache(user_id: int | None = None, via: str = "beat") -> dict[str, Any]:
    """Warm the default data source's cache. A run that finds another warmer at work does
    nothing (no stampede); a cache that is down fails the task (CacheUnavailable)."""
    user = get_user_model().objects.filter(id=user_id).first() if user_id is not None else None
    try:
        return {"state": "warmed", **cache_warm(user, via).as_dict()}
    except WarmInProgress as err:
        logger.info("cache warm skipped: %s", err)
        return {"state": "skipped", "reason": str(err)}
