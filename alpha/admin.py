"""Alpha models in the admin: read-only (they are artefacts of training, written by train_alpha)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from alpha.models import AlphaModel


@admin.register(AlphaModel)
class AlphaModelAdmin(admin.ModelAdmin):
    list_display = ("version", "data_provider", "data_cutoff", "train_start", "train_end", "symbols", "ic_5d", "ic_10d")
    list_filter = ("data_provider",)
    search_fields = ("version", "source")
    readonly_fields = [f.name for f in AlphaModel._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="rank IC 5d (t)")
    def ic_5d(self, obj: AlphaModel) -> str:
        return _ic(obj, "5")

    @admin.display(description="rank IC 10d (t)")
    def ic_10d(self, obj: AlphaModel) -> str:
        return _ic(obj, "10")


def _ic(obj: AlphaModel, horizon: str) -> str:
    ic = obj.evaluation.get("horizons", {}).get(horizon, {}).get("rank_ic", {})
    if ic.get("mean") is None:
        return "-"
    t = ic.get("t_stat")
    return f"{ic['mean']:.4f} ({t:.2f})" if t is not None else f"{ic['mean']:.4f}"
