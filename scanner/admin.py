"""Scan administration: status, stage timings, counts and errors (read-only: the workflow owns scans)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from progress.tracker import STAGES
from scanner.models import Scan


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "status",
        "current_stage",
        "total_symbols",
        "result_count",
        "skip_count",
        "stage_seconds",
        "data_provider",
        "created_at",
        "error_code",
    )
    list_filter = ("status", "data_provider", "error_code")
    search_fields = ("id", "owner__username", "error_code")
    readonly_fields = [f.name for f in Scan._meta.fields]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Scan]:
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(n_results=Count("results", distinct=True), n_skips=Count("skips", distinct=True))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="results", ordering="n_results")
    def result_count(self, scan: Any) -> int:
        return int(scan.n_results)

    @admin.display(description="skipped", ordering="n_skips")
    def skip_count(self, scan: Any) -> int:
        return int(scan.n_skips)

    @admin.display(description="stage seconds (load / fetch / scan / finalize)")
    def stage_seconds(self, scan: Scan) -> str:
        timings = scan.stage_timings()
        return " / ".join("-" if timings[s]["seconds"] is None else f"{timings[s]['seconds']:.2f}" for s in STAGES)
