from __future__ import annotations

from django.apps import AppConfig


class WebConfig(AppConfig):
    """The analyst's web page: server-rendered templates plus plain JavaScript clients of the API."""

    name = "web"
    verbose_name = "Web page"
