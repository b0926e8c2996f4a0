"""WebSocket routes."""

from __future__ import annotations

from django.urls import URLPattern, path

from live.consumers import ScanProgressConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("scan/ws/<uuid:scan_id>", ScanProgressConsumer.as_asgi(), name="scan-ws"),
]
