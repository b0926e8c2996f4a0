"""``GET /api/cache/stats`` (any signed-in user; where the cache's Redis is, for staff only),
``POST /api/cache/clear`` and ``POST /api/cache/warm`` (staff only)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cache_admin.services import cache_clear, warm_running
from cache_admin.tasks import warm_cache
from infra.errors import ApiError
from infra.openapi import error_response
from market import cache
from market.stats import cache_stats


class CacheKindSerializer(serializers.Serializer):
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    hit_rate = serializers.FloatField(allow_null=True)
    keys = serializers.IntegerField()


class CacheStatsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        ["excellent", "good", "poor", "idle", "unavailable"],
        help_text="by hit rate: excellent ≥ 80 %, good 50-79 %, poor < 50 %; idle before any lookup",
    )
    available = serializers.BooleanField()
    url = serializers.CharField(
        allow_null=True, help_text="CACHE_REDIS_URL without its password; staff only (null for others)"
    )
    hits = serializers.IntegerField(allow_null=True)
    misses = serializers.IntegerField(allow_null=True)
    hit_rate = serializers.FloatField(allow_null=True, help_text="percent")
    keys = serializers.IntegerField(allow_null=True)
    by_kind = serializers.DictField(child=CacheKindSerializer(), help_text="bars, universe, results")
    memory = serializers.DictField(help_text="the Redis server's used, peak, fragmentation, maxmemory and policy")
    server = serializers.DictField(help_text="Redis version, uptime, clients, evicted and expired keys, ping")
    error = serializers.CharField(allow_null=True, help_text="why the cache is unavailable (the details for staff)")
    total_keys = serializers.IntegerField(allow_null=True, help_text="the same as keys, for older dashboards")
    memory_used_mb = serializers.FloatField(allow_null=True, help_text="the Redis server's used memory, MiB")
    keys_by_type = serializers.DictField(child=serializers.IntegerField(), help_text="keys per kind")


class CacheClearedSerializer(serializers.Serializer):
    removed_keys = serializers.IntegerField()
    seconds = serializers.FloatField()
    cleared_by = serializers.CharField()
    cleared_at = serializers.DateTimeField()


class CacheWarmQueuedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField()


STAFF_ONLY = {
    401: error_response("NOT_AUTHENTICATED"),
    403: error_response("PERMISSION_DENIED: not a staff account; CSRF_FAILED for a session without the token"),
    503: error_response("CACHE_UNAVAILABLE: the cache's Redis cannot be reached"),
}


def cache_unavailable(err: Exception) -> ApiError:
    return ApiError(
        "CACHE_UNAVAILABLE",
        str(err),
        status.HTTP_503_SERVICE_UNAVAILABLE,
        ["Check that the Redis at CACHE_REDIS_URL is running", "Scans still run, uncached, meanwhile"],
        {"url": cache.safe_url()},
    )


class CacheStatsView(APIView):
    @extend_schema(responses={200: CacheStatsSerializer, 401: error_response("NOT_AUTHENTICATED")})
    def get(self, request: Request) -> Response:
        """The price cache's statistics; ``status`` says ``unavailable`` when its Redis is down.
        Where the cache's Redis is (``url``, and the address in ``error``) is shown to staff only."""
        stats = cache_stats().as_dict()
        if not IsAdminUser().has_permission(request, self):
            stats["url"] = None
            if stats["error"]:
                stats["error"] = "the price cache's Redis cannot be reached"
        return Response(CacheStatsSerializer(stats).data)


class CacheClearView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: CacheClearedSerializer, **STAFF_ONLY})
    def post(self, request: Request) -> Response:
        """Remove every price-cache key (no other key), audited with the caller's name."""
        try:
            action = cache_clear(request.user, via="api")
        except cache.CacheUnavailable as err:
            raise cache_unavailable(err) from err
        body = {
            "removed_keys": action.keys,
            "seconds": action.seconds,
            "cleared_by": action.username,
            "cleared_at": action.at,
        }
        return Response(CacheClearedSerializer(body).data)


class CacheWarmView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        request=None,
        responses={202: CacheWarmQueuedSerializer, 409: error_response("CACHE_WARM_IN_PROGRESS"), **STAFF_ONLY},
    )
    def post(self, request: Request) -> Response:
        """Queue a warm of the default universe and the most-scanned symbols (a worker runs it)."""
        try:
            running = warm_running()
        except cache.CacheUnavailable as err:
            raise cache_unavailable(err) from err
        if running:
            raise ApiError(
                "CACHE_WARM_IN_PROGRESS",
                "A warm of the cache is already running.",
                status.HTTP_409_CONFLICT,
                ["Wait for it to finish (the admin's cache page lists finished warms)"],
            )
        result = warm_cache.delay(request.user.pk, "api")
        return Response({"task_id": result.id, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
