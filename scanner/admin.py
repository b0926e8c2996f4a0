from __future__ import annotations

from django.contrib import admin

from scanner.models import Scan


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "status",
        "current_stage",
        "total_symbols",
        "data_provider",
        "created_at",
        "error_code",
    )
    list_filter = ("status", "data_provider")
    search_fields = ("id", "owner__username", "error_code")
    readonly_fields = [f.name for f in Scan._meta.fields]
