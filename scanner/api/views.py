"""The scan endpoints of PRODUCT.md: start (also the legacy ``GET /scan``), results, cancel,
active, history and diff. Every path with a scan id answers 404 ``SCAN_NOT_FOUND`` unless the
scan is the caller's. Errors use the API's one shape (``infra.errors``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.http import QueryDict, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import APISettings
from rest_framework.views import APIView

from engine.config import ConfigError, ScanConfig
from infra.errors import ApiError, scan_not_found
from infra.openapi import error_response
from infra.throttles import ScopeThrottle
from market.providers import DataProviderError
from scanner.api.serializers import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    ActiveScanSerializer,
    HistoryPageSerializer,
    HistoryQuerySerializer,
    ResultsQuerySerializer,
    ScanCancelSerializer,
    ScanDiffSerializer,
    ScanResultsSerializer,
    ScanStartedSerializer,
    ScanStartSerializer,
    ScanSummarySerializer,
    config_error,
    provider_unavailable,
    scan_links,
    start_options,
    unknown_field,
    validated,
)
from scanner.csv_export import stream_csv
from scanner.models import Scan, Screen
from scanner.selectors import (
    active_scans,
    finished_scans,
    ranked_rows,
    scan_diff,
    scan_results,
    scan_summary,
    user_scan,
)
from scanner.services import ScanNotCancellable, TooManyActiveScans, scan_cancel, scan_create, scan_wait

ACTIVE_RETRY_AFTER_SECONDS = 5
LEGACY_PARAMS = ("max_symbols", "sectors", "filter", "rank_by", "order", "screen_id")


NOT_AUTHENTICATED = {401: error_response("NOT_AUTHENTICATED: no or an invalid token or session")}
THROTTLED = {429: error_response("THROTTLED (with Retry-After)")}
NOT_FOUND = {404: error_response("SCAN_NOT_FOUND: no such scan among the caller's")}
CSRF = {403: error_response("a session client sent no valid CSRF token")}
STARTING = {
    400: error_response(
        "INVALID_<FIELD> (INVALID_FILTER and INVALID_RANK_BY with details.position and details.expected), "
        "INVALID_SECTOR, INVALID_SYMBOL, UNKNOWN_FIELD, INVALID_BODY, MALFORMED_JSON"
    ),
    404: error_response("SCREEN_NOT_FOUND: no such saved screen among the caller's"),
    **NOT_AUTHENTICATED,
    429: error_response("TOO_MANY_ACTIVE_SCANS (details.active_scan_ids) or THROTTLED; both with Retry-After"),
    503: error_response(
        "DATA_PROVIDER_AUTH (the provider rejected its key), DATA_PROVIDER_UNAVAILABLE (it does not answer), "
        "DATA_SOURCE_ERROR or DATA_PROVIDER_ERROR (the market data cannot be read); "
        "REDIS_UNAVAILABLE: the broker cannot be reached"
    ),
}


def _owned(request: Request, scan_id: UUID) -> Scan:
    scan = user_scan(request.user, scan_id)
    if scan is None:
        raise scan_not_found(scan_id)
    return scan


def _finished(scan: Scan) -> Scan:
    if not scan.is_finished:
        raise ApiError(
            "SCAN_NOT_FINISHED",
            f"Scan {scan.id} is {scan.status}.",
            status.HTTP_409_CONFLICT,
            ["Follow progress_url until the status is terminal"],
            {"scan_id": str(scan.id), "status": scan.status, "progress_url": scan_links(scan.id)["progress_url"]},
        )
    return scan


def _start(request: Request, config: ScanConfig, async_mode: bool, screen: Screen | None = None) -> Response:
    """Create the scan; with ``async_mode`` false wait for it (TECHNIC_SYNC_SCAN_TIMEOUT) and
    answer its results if it finished in time. Otherwise 202 with where to follow it."""
    try:
        scan = scan_create(
            owner=request.user, config=config, max_active=settings.TECHNIC_MAX_ACTIVE_SCANS, screen=screen
        )
    except ConfigError as err:
        raise config_error(err, getattr(config, err.field, None)) from err
    except TooManyActiveScans as err:
        raise ApiError(
            "TOO_MANY_ACTIVE_SCANS",
            f"You have {len(err.scan_ids)} scans pending or running, the most allowed at once.",
            status.HTTP_429_TOO_MANY_REQUESTS,
            ["Wait for one to finish, or cancel one with POST /scan/cancel/<scan_id>"],
            {"active_scan_ids": [str(i) for i in err.scan_ids], "limit": settings.TECHNIC_MAX_ACTIVE_SCANS},
            {"Retry-After": str(ACTIVE_RETRY_AFTER_SECONDS)},
        ) from err
    except DataProviderError as err:
        raise provider_unavailable(err) from err
    body: dict[str, Any] = {"scan_id": scan.id, "status": scan.status, **scan_links(scan.id)}
    if not async_mode:
        scan = scan_wait(scan, settings.TECHNIC_SYNC_SCAN_TIMEOUT)
        if scan.is_finished:
            return Response(ScanResultsSerializer(results_page(request, scan)).data)
        body.update(status=scan.status, message="still running; follow progress_url")
    return Response(ScanStartedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class ScanStartView(APIView):
    throttle_classes = [*APIView.throttle_classes, ScopeThrottle]
    throttle_scope = "scan_start"

    @extend_schema(
        request=ScanStartSerializer,
        responses={
            200: OpenApiResponse(
                ScanResultsSerializer, description="async_mode false: the finished scan (the first page of its results)"
            ),
            202: ScanStartedSerializer,
            **CSRF,
            413: error_response("the body is over the server's limit"),
            415: error_response("UNSUPPORTED_MEDIA_TYPE: the body is not JSON"),
            **STARTING,
        },
    )
    def post(self, request: Request) -> Response:
        """Start a scan; 202 with its URLs, or (``async_mode: false``) its results."""
        config, async_mode, screen = start_options(request.user, request.data)
        return _start(request, config, async_mode, screen)


class ScanLegacyView(APIView):
    throttle_classes = [*APIView.throttle_classes, ScopeThrottle]
    throttle_scope = "scan_start"

    @extend_schema(
        parameters=[
            OpenApiParameter("max_symbols", {"type": "integer", "minimum": 1, "maximum": 20_000}),
            OpenApiParameter("sectors", str, description="comma-separated GICS sector names"),
            OpenApiParameter("filter", str, description="a screen expression (docs/screens.md)"),
            OpenApiParameter("rank_by", str, description="a number expression to rank by"),
            OpenApiParameter("order", str, description="desc (default) or asc"),
            OpenApiParameter("screen_id", int, description="run this saved screen"),
        ],
        responses={
            200: OpenApiResponse(
                ScanResultsSerializer, description="the finished scan (the first page of its results)"
            ),
            202: OpenApiResponse(ScanStartedSerializer, description="still running; follow progress_url"),
            **STARTING,
        },
    )
    def get(self, request: Request) -> Response:
        """Legacy synchronous scan: POST /scan/start with ``async_mode: false``, options in the query."""
        config, _, screen = start_options(request.user, _legacy_body(request.query_params))
        return _start(request, config, async_mode=False, screen=screen)


def _legacy_body(query: QueryDict) -> dict[str, Any]:
    """GET /scan's query as a start body: ``max_symbols`` a number if it is digits, ``sectors``
    split on commas (also repeated); any other parameter is UNKNOWN_FIELD."""
    unknown = [name for name in query if name not in LEGACY_PARAMS]
    if unknown:
        raise unknown_field(unknown, list(LEGACY_PARAMS))
    body: dict[str, Any] = {}
    for name in ("max_symbols", "screen_id"):
        raw = query.get(name)
        if raw is not None:
            body[name] = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else raw
    for name in ("filter", "rank_by", "order"):
        if name in query:
            body[name] = query[name]
    if "sectors" in query:
        body["sectors"] = [s.strip() for value in query.getlist("sectors") for s in value.split(",") if s.strip()]
    return body


class _FormatIsAQueryParameter(DefaultContentNegotiation):
    """Leaves ``?format=`` to the view instead of choosing a renderer with it."""

    # The stubs allow only a str here, but None is how DRF turns the override off.
    settings = APISettings({"URL_FORMAT_OVERRIDE": None})  # type: ignore[assignment,arg-type]


class ScanResultsView(APIView):
    content_negotiation_class = _FormatIsAQueryParameter

    @extend_schema(
        parameters=[ResultsQuerySerializer],
        responses={
            (200, "application/json"): ScanResultsSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the ranked rows as CSV"),
            400: error_response("INVALID_FORMAT, INVALID_LIMIT, INVALID_OFFSET"),
            **NOT_AUTHENTICATED,
            **NOT_FOUND,
            409: error_response("SCAN_NOT_FINISHED: pending or running (details.progress_url)"),
            **THROTTLED,
        },
    )
    def get(self, request: Request, scan_id: UUID) -> Response | StreamingHttpResponse:
        """A finished scan's results, skip list and metrics (partial for a cancelled or failed one).

        Result rows come a page at a time: ``limit`` (at most, and by default, the server's page
        size) from ``offset``; ``count`` is the number of rows in all and ``next`` the URL of the
        following page (null on the last). ``scan`` and ``skipped`` are whole on every page. The
        CSV export is every row, streamed."""
        query = validated(ResultsQuerySerializer, request.query_params)
        scan = _finished(_owned(request, scan_id))
        if query["format"] == "csv":
            return StreamingHttpResponse(
                stream_csv(ranked_rows(scan)),
                content_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="scan-{scan.id}.csv"'},
            )
        page = results_page(request, scan, query["offset"], query.get("limit"))
        return Response(ScanResultsSerializer(page).data)


def results_page(request: Request, scan: Scan, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
    """``scan_results`` with the result rows from ``offset``, at most ``limit`` of them (lowered
    to TECHNIC_RESULTS_PAGE_SIZE, the default), plus ``count``, ``next`` and ``previous``:
    absolute URLs of the neighbouring pages of GET /scan/results, or None."""
    limit = min(limit or settings.TECHNIC_RESULTS_PAGE_SIZE, settings.TECHNIC_RESULTS_PAGE_SIZE)
    body = scan_results(scan, server_paths=getattr(request.user, "is_staff", False))
    count = len(body["results"])
    url = scan_links(scan.id)["results_url"]

    def link(start: int) -> str:
        return request.build_absolute_uri(f"{url}?{urlencode({'limit': limit, 'offset': start})}")

    return {
        **body,
        "results": body["results"][offset : offset + limit],
        "count": count,
        "next": link(offset + limit) if offset + limit < count else None,
        "previous": link(max(offset - limit, 0)) if offset > 0 else None,
    }


class ScanCancelView(APIView):
    @extend_schema(
        request=None,
        responses={
            202: ScanCancelSerializer,
            **CSRF,
            **NOT_AUTHENTICATED,
            **NOT_FOUND,
            409: error_response("SCAN_FINISHED: completed or failed; its outcome stands"),
            **THROTTLED,
        },
    )
    def post(self, request: Request, scan_id: UUID) -> Response:
        """Ask the scan to stop (partial results are kept); cancelling again answers the same."""
        try:
            scan = scan_cancel(_owned(request, scan_id))
        except ScanNotCancellable as err:
            raise ApiError(
                "SCAN_FINISHED",
                f"Scan {scan_id} already finished; its outcome stands.",
                status.HTTP_409_CONFLICT,
                [f"GET /scan/results/{scan_id}"],
                {"scan_id": str(scan_id)},
            ) from err
        body = {"scan_id": scan.id, "status": scan.status, "cancel_requested": True}
        return Response(ScanCancelSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class ActiveScansView(APIView):
    @extend_schema(responses={200: ActiveScanSerializer(many=True), **NOT_AUTHENTICATED, **THROTTLED})
    def get(self, request: Request) -> Response:
        """The caller's pending and running scans, newest first."""
        active = [{**item, **scan_links(item["scan_id"])} for item in active_scans(request.user)]
        return Response(ActiveScanSerializer(active, many=True).data)


class _HistoryPagination(LimitOffsetPagination):
    """``limit`` (1 to 100, default 20) and ``offset``; anything else answers 400."""

    default_limit, max_limit = PAGE_SIZE, MAX_PAGE_SIZE

    def get_limit(self, request: Request) -> int:
        return int(validated(HistoryQuerySerializer, request.query_params)["limit"])

    def get_offset(self, request: Request) -> int:
        return int(validated(HistoryQuerySerializer, request.query_params)["offset"])


class ScanHistoryView(APIView):
    @extend_schema(
        parameters=[HistoryQuerySerializer],
        responses={
            200: HistoryPageSerializer,
            400: error_response("INVALID_LIMIT, INVALID_OFFSET"),
            **NOT_AUTHENTICATED,
            **THROTTLED,
        },
    )
    def get(self, request: Request) -> Response:
        """The caller's finished scans, newest first, a page at a time."""
        paginator = _HistoryPagination()
        page = paginator.paginate_queryset(finished_scans(request.user), request, view=self)
        assert page is not None, "get_limit always gives a limit"
        items = [{**scan_summary(scan), "results_url": scan_links(scan.id)["results_url"]} for scan in page]
        return paginator.get_paginated_response(ScanSummarySerializer(items, many=True).data)


class ScanDiffView(APIView):
    @extend_schema(
        responses={
            200: ScanDiffSerializer,
            **NOT_AUTHENTICATED,
            **NOT_FOUND,
            409: error_response("SCAN_NOT_FINISHED: one of the scans is pending or running"),
            **THROTTLED,
        },
    )
    def get(self, request: Request, scan_id: UUID, other_id: UUID) -> Response:
        """What changed from ``scan_id`` to ``other_id`` (see ``scanner.selectors.scan_diff``)."""
        scan, other = _owned(request, scan_id), _owned(request, other_id)
        return Response(ScanDiffSerializer(scan_diff(_finished(scan), _finished(other))).data)
