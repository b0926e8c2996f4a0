"""Routes of the cache endpoints (paths fixed by PRODUCT.md)."""

from __future__ import annotations

from django.urls import path

from cache_admin import api

urlpatterns = [
    path("api/cache/stats", api.CacheStatsView.as_view(), name="cache-stats"),
    path("api/cache/clear", api.CacheClearView.as_view(), name="cache-clear"),
    path("api/cache/warm", api.CacheWarmView.as_view(), name="cache-warm"),
]
