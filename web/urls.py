"""Routes of the pages (with a trailing slash) and of the chart endpoint (API style, without)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from web import views

urlpatterns = [
    path("", views.home, name="web-home"),
    path("scans/<uuid:scan_id>/", views.scan_page, name="web-scan"),
    path("history/", views.history_page, name="web-history"),
    path("history/<uuid:scan_id>/diff/", views.diff_page, name="web-diff"),
    path(
        "accounts/login/",
        views.page(auth_views.LoginView.as_view(template_name="web/login.html", redirect_authenticated_user=True)),
        name="login",
    ),
    path("accounts/logout/", views.page(auth_views.LogoutView.as_view()), name="logout"),
    path("scan/chart/<uuid:scan_id>/<str:symbol>", views.ScanChartView.as_view(), name="scan-chart"),
]
