"""The admin's Cache page (staff only): statistics, Clear and Warm buttons, the market data
store's coverage with an Update button, and the audit trail.

The page is the change list of :class:`CacheAction`, with the statistics above it; Clear, Warm
and Update are POST forms (CSRF-protected by the admin site) to the views of ``get_urls``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from cache_admin.models import CacheAction
from cache_admin.services import cache_clear, warm_running
from cache_admin.tasks import update_market_data, warm_cache
from market import cache, upkeep
from market.stats import cache_stats


@admin.register(CacheAction)
class CacheActionAdmin(admin.ModelAdmin):
    list_display = ("at", "kind", "username", "via", "keys", "seconds", "detail")
    list_filter = ("kind", "via")
    ordering = ("-at",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [
            path("clear/", self.admin_site.admin_view(self.clear_view), name="cache_admin_clear"),
            path("warm/", self.admin_site.admin_view(self.warm_view), name="cache_admin_warm"),
            path("marketdata/", self.admin_site.admin_view(self.marketdata_view), name="cache_admin_marketdata"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        stats = cache_stats()
        context = {**(extra_context or {}), "stats": stats, "stored": upkeep.coverage(), "title": "Price cache"}
        response = super().changelist_view(request, context)
        if isinstance(response, TemplateResponse):
            response.context_data = {**(response.context_data or {}), **context}
        return response

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:cache_admin_cacheaction_changelist"))

    def clear_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            action = cache_clear(request.user, via="admin")
        except cache.CacheUnavailable as err:
            self.message_user(request, f"Nothing cleared: {err}", messages.ERROR)
        else:
            self.message_user(request, f"Cache cleared: {action.keys} keys removed in {action.seconds} s.")
        return self._back()

    def warm_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            running = warm_running()
        except cache.CacheUnavailable as err:
            self.message_user(request, f"Cannot warm: {err}", messages.ERROR)
            return self._back()
        if running:
            self.message_user(request, "A warm is already running; its result will be listed here.", messages.WARNING)
        else:
            result = warm_cache.delay(request.user.pk, "admin")
            self.message_user(request, f"Warm queued (task {result.id}); a worker runs it and it is listed here.")
        return self._back()

    def marketdata_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        result = update_market_data.delay(request.user.pk, "admin", trading_days_only=False)
        self.message_user(
            request, f"Market data update queued (task {result.id}); a worker runs it and it is listed here."
        )
        return self._back()
