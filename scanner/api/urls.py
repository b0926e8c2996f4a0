"""Routes of the scan and saved screen endpoints (paths fixed by PRODUCT.md: no trailing slash but
on the screen list, ``/api/screens/``)."""

from __future__ import annotations

from django.urls import path

from scanner.api import screens, views

urlpatterns = [
    path("scan", views.ScanLegacyView.as_view(), name="scan-legacy"),
    path("scan/start", views.ScanStartView.as_view(), name="scan-start"),
    path("scan/results/<uuid:scan_id>", views.ScanResultsView.as_view(), name="scan-results"),
    path("scan/cancel/<uuid:scan_id>", views.ScanCancelView.as_view(), name="scan-cancel"),
    path("scan/active", views.ActiveScansView.as_view(), name="scan-active"),
    path("scan/history", views.ScanHistoryView.as_view(), name="scan-history"),
    path("scan/diff/<uuid:scan_id>/<uuid:other_id>", views.ScanDiffView.as_view(), name="scan-diff"),
    path("api/screens/", screens.ScreenListView.as_view(), name="screen-list"),
    path("api/screens/catalogue", screens.ScreenCatalogueView.as_view(), name="screen-catalogue"),
    path("api/screens/check", screens.ScreenCheckView.as_view(), name="screen-check"),
    path("api/screens/preview", screens.ScreenPreviewView.as_view(), name="screen-preview"),
    path("api/screens/<int:screen_id>", screens.ScreenDetailView.as_view(), name="screen-detail"),
]
