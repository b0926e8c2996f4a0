"""Scan administration: status, stage timings, counts and errors (read-only: the workflow owns
scans); saved screens, validated on save as a scan would run them."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from engine.config import ConfigError, ScanConfig
from engine.screens.language import ScreenError
from progress.tracker import STAGES
from scanner.models import Scan, Screen

SCREEN_FIELDS = ("filter", "rank_by", "order")
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ScanConfig) if f.name not in SCREEN_FIELDS)
SHOWN_CHARS = 80


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


class ScreenForm(forms.ModelForm):
    class Meta:
        model = Screen
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        """The screen as a scan would run it: ``ScanConfig`` of its options, filter, rank_by and
        order; its first problem is a ValidationError on that field (options for an option's)."""
        data = super().clean() or {}
        if self.errors:
            return data
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise ValidationError({"options": 'Scan options are a JSON object, e.g. {"sectors": ["Energy"]}.'})
        unknown = [name for name in options if name not in OPTION_NAMES]
        if unknown:
            raise ValidationError({"options": f"Unknown options {unknown}; known: {', '.join(OPTION_NAMES)}."})
        config: dict[str, Any] = {name: tuple(v) if isinstance(v, list) else v for name, v in options.items()}
        config.update(filter=data.get("filter") or "", rank_by=data.get("rank_by") or "", order=data["order"])
        try:
            if isinstance(config.get("as_of"), str):
                config["as_of"] = date.fromisoformat(config["as_of"])
            ScanConfig(**config)
        except ConfigError as err:
            message = str(err)
            if isinstance(err, ScreenError):
                message += f" (at character {err.position}; expected: {', '.join(err.expected) or 'nothing more'})"
            if err.suggestions:
                message += f"; did you mean: {', '.join(err.suggestions)}?"
            raise ValidationError({err.field if err.field in SCREEN_FIELDS else "options": message}) from err
        except (TypeError, ValueError) as err:  # an option of the wrong type, an as_of not YYYY-MM-DD
            raise ValidationError({"options": f"Invalid option: {err}"}) from err
        return data


@admin.register(Screen)
class ScreenAdmin(admin.ModelAdmin):
    form = ScreenForm
    list_display = ("name", "owner", "filter_text", "rank_by", "order", "updated_at")
    list_filter = ("order",)
    list_select_related = ("owner",)
    search_fields = ("name", "owner__username")
    ordering = ("owner__username", "name")
    readonly_fields = ("created_at", "updated_at")
    date_hierarchy = "updated_at"

    @admin.display(description="filter", ordering="filter")
    def filter_text(self, screen: Screen) -> str:
        text = screen.filter
        return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
