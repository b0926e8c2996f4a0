"""Routes of the scan endpoints."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
