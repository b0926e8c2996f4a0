"""HTTP routes of live progress; WebSocket routes are in ``live.routing``."""

from __future__ import annotations

from django.urls import path

from live.views import ScanProgressView, scan_events

urlpatterns = [
    path("scan/progress/<uuid:scan_id>", ScanProgressView.as_view(), name="scan-progress"),
    path("scan/sse/<uuid:scan_id>", scan_events, name="scan-sse"),
    path("scan/stream/<uuid:scan_id>", scan_events, name="scan-stream"),
]
