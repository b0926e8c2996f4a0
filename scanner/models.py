"""The record of every scan: its state, timings and per-symbol outcomes.

The database is the source of truth for a scan's status and results; Redis only holds
transient state (queues, chord counters, progress, cached bars).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from engine.scan import SKIP_REASONS
from progress.tracker import STAGES, TERMINAL


class ScanStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (ScanStatus.COMPLETED, ScanStatus.FAILED, ScanStatus.CANCELLED)
if {str(s) for s in TERMINAL_STATUSES} != set(TERMINAL):
    raise RuntimeError(f"terminal statuses {TERMINAL_STATUSES} differ from the progress tracker's {TERMINAL}")


class SkipReason(models.TextChoices):
    """The engine's SKIP_REASONS as database choices (spelled out for the type checker; the
    check below keeps the two one vocabulary)."""

    NO_DATA = "no_data"
    INSUFFICIENT_HISTORY = "insufficient_history"
    BELOW_MIN_PRICE = "below_min_price"
    ILLIQUID = "illiquid"
    BAD_DATA = "bad_data"
    BELOW_MIN_RATING = "below_min_rating"
    NOT_MATCHED = "not_matched"
    ERROR = "error"
    CANCELLED = "cancelled"


if tuple(SkipReason.values) != SKIP_REASONS:
    raise RuntimeError(f"SkipReason {SkipReason.values} differs from the engine's SKIP_REASONS {SKIP_REASONS}")


class Scan(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="scans"
    )
    config = models.JSONField(help_text="ScanConfig.as_dict() as requested")
    status = models.CharField(max_length=16, choices=ScanStatus.choices, default=ScanStatus.PENDING, db_index=True)
    current_stage = models.CharField(max_length=32, blank=True)
    data_provider = models.CharField(max_length=16)
    data_path = models.CharField(max_length=500, blank=True)
    universe_path = models.CharField(max_length=500, blank=True)
    synthetic = models.BooleanField(default=False)
    as_of = models.DateField(null=True, blank=True)
    universe = models.JSONField(
        default=list, blank=True, help_text="[[symbol, name, sector], ...] fixed by universe_loading"
    )
    total_symbols = models.PositiveIntegerField(default=0)
    batch_size = models.PositiveIntegerField(default=1)
    n_batches = models.PositiveIntegerField(default=0)
    universe_loading_started_at = models.DateTimeField(null=True, blank=True)
    universe_loading_ended_at = models.DateTimeField(null=True, blank=True)
    data_fetching_started_at = models.DateTimeField(null=True, blank=True)
    data_fetching_ended_at = models.DateTimeField(null=True, blank=True)
    symbol_scanning_started_at = models.DateTimeField(null=True, blank=True)
    symbol_scanning_ended_at = models.DateTimeField(null=True, blank=True)
    finalization_started_at = models.DateTimeField(null=True, blank=True)
    finalization_ended_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="the last progress snapshot, once finished")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last progress; the watchdog reads it")
    screen = models.ForeignKey(
        "Screen",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scans",
        help_text="the saved screen it ran (its text as it ran is in config)",
    )
    benchmark = models.JSONField(
        default=dict, blank=True, help_text="the rs_* fields' benchmark {label, dates, levels}, once computed"
    )

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"scan {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def stage_timings(self) -> dict[str, dict[str, str | float | None]]:
        """Per stage: ISO start and end, and seconds (None until it ends)."""
        out: dict[str, dict[str, str | float | None]] = {}
        for stage in STAGES:
            started, ended = getattr(self, f"{stage}_started_at"), getattr(self, f"{stage}_ended_at")
            out[stage] = {
                "started": started.isoformat() if started else None,
                "ended": ended.isoformat() if ended else None,
                "seconds": round((ended - started).total_seconds(), 3) if started and ended else None,
            }
        return out


class ScanResult(models.Model):
    """One scanned symbol; ``row`` holds the full result row of the contract."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="results")
    symbol = models.CharField(max_length=32)
    sector = models.CharField(max_length=64)
    tech_rating = models.FloatField()
    signal = models.CharField(max_length=16)
    row = models.JSONField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("scan", "symbol"), name="one_result_per_scan_symbol")]
        indexes = [models.Index(fields=("scan", "-tech_rating"), name="result_rank")]
        ordering = ("-tech_rating", "symbol")

    def __str__(self) -> str:
        return f"{self.symbol} {self.tech_rating}"


class ScanSkip(models.Model):
    """A requested symbol that has no result, and why."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="skips")
    symbol = models.CharField(max_length=32)
    reason = models.CharField(max_length=32, choices=SkipReason.choices)
    detail = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("scan", "symbol"), name="one_skip_per_scan_symbol")]
        ordering = ("symbol",)

    def __str__(self) -> str:
        return f"{self.symbol}: {self.reason}"


class ScanStrength(models.Model):
    """An eligible symbol's relative strength score, recorded when the screen uses ``rs_rating``
    (finalization ranks them across the scan); ``score`` None when undefined."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="strengths")
    symbol = models.CharField(max_length=32)
    score = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("scan", "symbol"), name="one_strength_per_scan_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol}: {self.score}"


class Screen(models.Model):
    """A user's saved screen: a filter, a ranking and scan options (docs/screens.md)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="screens")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=2000)
    filter = models.TextField(blank=True)
    rank_by = models.TextField(blank=True)
    order = models.CharField(max_length=4, choices=[("desc", "desc"), ("asc", "asc")], default="desc")
    options = models.JSONField(default=dict, blank=True, help_text="scan options: sectors, min_price, ...")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("owner", "name"), name="one_screen_name_per_owner")]
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class ScanAlpha(models.Model):
    """Which alpha model a scan uses, fixed once for the whole scan (``model`` None: no model fitted)."""

    scan = models.OneToOneField(Scan, primary_key=True, on_delete=models.CASCADE, related_name="alpha")
    model = models.ForeignKey("alpha.AlphaModel", null=True, blank=True, on_delete=models.PROTECT, related_name="scans")
    assigned_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"scan {self.scan_id}: {self.model.version if self.model else 'no alpha model'}"
