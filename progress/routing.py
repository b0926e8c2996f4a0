"""WebSocket routes. The progress consumer (``/scan/ws/<id>``) is added with live progress."""

from __future__ import annotations

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
