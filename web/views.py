"""The analyst's pages and the chart endpoint.

Pages render the server-side facts (the universe's sectors, a scan's links, the history) and
leave everything live to the plain JavaScript under ``web/static/web/``, which calls the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from infra.errors import ApiError, scan_not_found
from infra.openapi import error_response
from market.providers import DataProviderError
from market.providers.base import ERROR_SUGGESTIONS, provider_error_code
from progress.tracker import STAGES
from scanner.api.serializers import scan_links
from scanner.api.views import NOT_AUTHENTICATED, THROTTLED
from scanner.models import Scan
from scanner.selectors import finished_scans, scan_diff, scan_summary, user_scan
from web.selectors import form_choices, previous_scan, symbol_chart
from web.serializers import ChartSerializer

HISTORY_PAGE_SIZE = 20
STAGE_LABELS = {
    "universe_loading": "Universe loading",
    "data_fetching": "Data fetching",
    "symbol_scanning": "Symbol scanning",
    "finalization": "Finalization",
}

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def page(view: View) -> View:
    """Marks ``view`` as a page people read: its error answers (404, 403, 503) stay HTML pages
    instead of becoming the API's JSON error body (see ``infra.middleware``)."""
    view.html_errors = True  # type: ignore[attr-defined]
    return view


@page
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The scan form (sectors from the universe) and the user's running scans. When the market
    data cannot be read the page says so, with a 503, instead of the form."""
    try:
        choices = form_choices()
    except DataProviderError as err:
        return render(request, "web/home.html", {"provider_error": str(err)}, status=503)
    return render(request, "web/home.html", {"choices": choices})


def _owned_page(request: HttpRequest, scan_id: UUID) -> Scan:
    scan = user_scan(request.user, scan_id)
    if scan is None:
        raise Http404("No such scan among yours.")
    return scan


@page
@login_required
def scan_page(request: HttpRequest, scan_id: UUID) -> HttpResponse:
    """One scan: live progress until it ends, then its results and charts."""
    scan = _owned_page(request, scan_id)
    page_data = {
        "scan_id": str(scan.id),
        "status": scan.status,
        "synthetic": scan.synthetic,
        "cancel_url": reverse("scan-cancel", args=[scan.id]),
        "chart_url": f"/scan/chart/{scan.id}/",
        **scan_links(scan.id),
    }
    stages = [(stage, STAGE_LABELS[stage]) for stage in STAGES]
    return render(request, "web/scan.html", {"scan": scan, "page_data": page_data, "stages": stages})


@page
@login_required
def history_page(request: HttpRequest) -> HttpResponse:
    """The user's finished scans, newest first, a page at a time."""
    listing = Paginator(finished_scans(request.user), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    scans = [{**scan_summary(s), "data_provider": s.data_provider, "synthetic": s.synthetic} for s in listing]
    return render(request, "web/history.html", {"page": listing, "scans": scans})


@page
@login_required
def diff_page(request: HttpRequest, scan_id: UUID) -> HttpResponse:
    """What changed from the user's previous finished scan to this one."""
    scan = _owned_page(request, scan_id)
    context: dict[str, Any] = {"scan": scan, "previous": None, "diff": None}
    if scan.is_finished:
        previous = previous_scan(scan)
        if previous is not None:
            context.update(previous=previous, diff=scan_diff(previous, scan))
    return render(request, "web/diff.html", context)


class ScanChartView(APIView):
    @extend_schema(
        responses={
            200: ChartSerializer,
            **NOT_AUTHENTICATED,
            404: error_response("SCAN_NOT_FOUND, or SYMBOL_NOT_FOUND: no result row"),
            **THROTTLED,
            503: error_response("DATA_SOURCE_ERROR, DATA_PROVIDER_UNAVAILABLE, …: the bars cannot be read"),
        }
    )
    def get(self, request: Request, scan_id: UUID, symbol: str) -> Response:
        """A result symbol's last bars with its indicators and the trade plan's levels."""
        scan = user_scan(request.user, scan_id)
        if scan is None:
            raise scan_not_found(scan_id)
        try:
            chart = symbol_chart(scan, symbol.upper())
        except DataProviderError as err:
            code = provider_error_code(err)
            suggestions = list(ERROR_SUGGESTIONS.get(code, ("Try again later",)))
            raise ApiError(code, str(err), status.HTTP_503_SERVICE_UNAVAILABLE, suggestions) from err
        if chart is None:
            raise ApiError(
                "SYMBOL_NOT_FOUND",
                f"Scan {scan_id} has no result for {symbol!r}.",
                status.HTTP_404_NOT_FOUND,
                [f"Pick a symbol from GET /scan/results/{scan_id}"],
                {"scan_id": str(scan_id), "symbol": symbol},
            )
        return Response(ChartSerializer(chart).data)
