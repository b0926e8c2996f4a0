"""Retention of finished scans: the beat task ``purge_finished_scans`` deletes the completed,
failed and cancelled scans older than ``TECHNIC_SCAN_RETENTION_DAYS``, with their results,
skips and alpha record (the foreign keys cascade). Pending and running scans are never touched,
however old."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from scanner.models import TERMINAL_STATUSES, Scan

# Scans deleted per transaction: a scan may carry up to 20,000 result rows, and a short
# transaction keeps SQLite's single writer (and PostgreSQL's locks) free for running scans.
PURGE_CHUNK = 10


def retention_cutoff(now: datetime | None = None) -> datetime | None:
    """The instant before which finished scans are deleted; None when retention is off
    (``TECHNIC_SCAN_RETENTION_DAYS=0``)."""
    days: int = settings.TECHNIC_SCAN_RETENTION_DAYS
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def _expired(before: datetime) -> Q:
    # A scan that failed before it began has no finished_at: its creation dates it.
    ended = Q(finished_at__lt=before) | Q(finished_at__isnull=True, created_at__lt=before)
    return Q(status__in=TERMINAL_STATUSES) & ended


def scan_purge(before: datetime, chunk: int = PURGE_CHUNK) -> int:
    """Delete the finished scans that ended before ``before``, oldest first, ``chunk`` scans per
    transaction; returns how many scans were deleted.

    Idempotent and resumable: an interrupted run leaves whole scans deleted or kept, and the
    next run deletes the rest. A scan still pending or running is never deleted."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    deleted = 0
    while True:
        ids = list(
            Scan.objects.filter(_expired(before)).order_by("created_at", "pk").values_list("pk", flat=True)[:chunk]
        )
        if not ids:
            return deleted
        with transaction.atomic():
            # only("pk"): the scans' own JSON (universe, progress, metrics) is never loaded.
            _, per_model = Scan.objects.filter(_expired(before), pk__in=ids).only("pk").delete()
        deleted += per_model.get(Scan._meta.label, 0)
