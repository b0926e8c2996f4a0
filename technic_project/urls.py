from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process answers. Needs no dependency."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("", include("progress.urls")),
    path("", include("scanner.api.urls")),
]

handler404 = "technic_project.errors.not_found"
handler500 = "technic_project.errors.server_error"
