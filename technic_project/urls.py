from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from technic_project import health
from technic_project.api import TicketView, TokenRevokeView, TokenView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health.health, name="health"),
    path("health/ready", health.ready, name="health-ready"),
    path("health/detailed", health.detailed, name="health-detailed"),
    path("metrics", health.prometheus, name="metrics"),
    path("api/auth/token/", TokenView.as_view(), name="api-token"),
    path("api/auth/token/revoke/", TokenRevokeView.as_view(), name="api-token-revoke"),
    path("api/auth/ticket/", TicketView.as_view(), name="api-ticket"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("cache_admin.urls")),
    path("", include("live.urls")),
    path("", include("scanner.api.urls")),
    path("", include("web.urls")),
]

handler404 = "infra.errors.not_found"
handler500 = "infra.errors.server_error"
