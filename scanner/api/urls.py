"""Routes of the scan endpoints (paths fixed by PRODUCT.md: no trailing slash)."""

from __future__ import annotations

from django.urls import path

from scanner.api import views

urlpatterns = [
    path("scan", views.ScanLegacyView.as_view(), name="scan-legacy"),
    path("scan/start", views.ScanStartView.as_view(), name="scan-start"),
    path("scan/results/<uuid:scan_id>", views.ScanResultsView.as_view(), name="scan-results"),
    path("scan/cancel/<uuid:scan_id>", views.ScanCancelView.as_view(), name="scan-cancel"),
    path("scan/active", views.ActiveScansView.as_view(), name="scan-active"),
    path("scan/history", views.ScanHistoryView.as_view(), name="scan-history"),
    path("scan/diff/<uuid:scan_id>/<uuid:other_id>", views.ScanDiffView.as_view(), name="scan-diff"),
]
