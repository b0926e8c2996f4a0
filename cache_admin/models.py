"""The audit trail of cache clears and warms and of market data updates and backfills: who,
when, how many keys or bars."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class CacheAction(models.Model):
    class Kind(models.TextChoices):
        CLEAR = "clear"
        WARM = "warm"
        UPDATE = "update", "market data update"
        BACKFILL = "backfill", "market data backfill"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True, help_text="kept if the user is deleted; empty for beat")
    via = models.CharField(max_length=16, help_text="admin, api, cli or beat")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    keys = models.IntegerField(
        help_text="keys removed (clear), symbols refreshed (warm) or bars written (update, backfill)"
    )
    seconds = models.FloatField()
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("-at",)
        verbose_name = "cache action"
        verbose_name_plural = "cache (statistics, clear, warm)"

    def __str__(self) -> str:
        return f"{self.kind} by {self.username or self.via} at {self.at:%Y-%m-%d %H:%M:%S}: {self.keys} keys"
