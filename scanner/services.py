"""Scan services: creating, starting and cancelling scans. Views and commands call these."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from engine.config import ScanConfig
from infra import metrics
from market.sources import DataSource, provider_for
from progress import store
from scanner import lifecycle, runtime
from scanner.models import TERMINAL_STATUSES, Scan, ScanStatus, Screen
from scanner.steps import load_universe
from scanner.workflow import build_workflow

logger = logging.getLogger(__name__)


class ScanNotCancellable(Exception):
    """The scan already finished; its outcome stands."""


class TooManyActiveScans(Exception):
    """The owner already has as many pending or running scans as allowed."""

    def __init__(self, scan_ids: list[Any]) -> None:
        super().__init__(f"{len(scan_ids)} scans are already pending or running")
        self.scan_ids = scan_ids


def scan_create(
    *,
    owner: Any,
    config: ScanConfig,
    source: DataSource | None = None,
    batch_size: int | None = None,
    max_active: int | None = None,
    screen: Screen | None = None,
) -> Scan:
    """Validate ``config`` against the universe, record a pending scan and enqueue its workflow
    once the transaction commits.

    Raises ConfigError (unknown sector or symbol, as_of outside the data) or
    DataProviderError, and TooManyActiveScans when ``owner`` already has ``max_active``
    unfinished scans, before anything is recorded or enqueued. ``screen`` is the saved screen
    the config's filter and ranking came from (recorded; its text as it ran is in the config).
    """
    source = source or DataSource.from_settings()
    provider = provider_for(source)
    instruments, _ = load_universe(provider, config)
    size = batch_size or settings.TECHNIC_BATCH_SIZE
    with transaction.atomic():
        if max_active is not None:
            # Locking the owner's row serialises their concurrent starts, so two cannot both
            # pass the cap (SQLite's IMMEDIATE transactions serialise them already).
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)
            active = list(
                Scan.objects.filter(owner=owner).exclude(status__in=TERMINAL_STATUSES).values_list("id", flat=True)
            )
            if len(active) >= max_active:
                raise TooManyActiveScans(active)
        scan = Scan.objects.create(
            owner=owner,
            config=config.as_dict(),
            data_provider=source.provider,
            data_path=source.data_path,
            universe_path=source.universe_path,
            synthetic=provider.synthetic,
            # Recorded now, so a cancel or a failure before universe_loading can account for it.
            universe=lifecycle.universe_rows(instruments),
            total_symbols=len(instruments),
            batch_size=size,
            n_batches=max(1, math.ceil(len(instruments) / size)),
            heartbeat_at=timezone.now(),
            screen=screen,
        )
        transaction.on_commit(lambda: scan_start(scan))
    return scan


def scan_start(scan: Scan) -> None:
    """Enqueue the scan's workflow. When it cannot be enqueued (the broker is down) the scan,
    which no worker can ever begin, is deleted before the error propagates: the caller is told
    the scan did not start, and no pending row is left to count against the owner's limit."""
    try:
        build_workflow(scan.id, scan.n_batches).apply_async()
    except Exception:  # whatever it is, it propagates: the caller's handler reports and logs it
        Scan.objects.filter(id=scan.id, status=ScanStatus.PENDING, started_at__isnull=True).delete()
        raise
    metrics.scan_started()


def scan_wait(scan: Scan, timeout: float, interval: float = 0.05) -> Scan:
    """Poll the scan's status every ``interval`` seconds until it finishes or ``timeout``
    passes; returns the scan re-read, finished or not."""
    deadline = time.monotonic() + timeout
    status = Scan.objects.filter(id=scan.id).values_list("status", flat=True)
    while status.get() not in TERMINAL_STATUSES and time.monotonic() < deadline:
        time.sleep(interval)
    scan.refresh_from_db()
    return scan


def scan_cancel(scan: Scan) -> Scan:
    """Stop a pending or running scan; idempotent.

    A scan no worker has begun is cancelled at once, every symbol skipped as ``cancelled``.
    Otherwise the cancel is requested: queued batches are skipped and running ones stop between
    chunks; finalization then records ``cancelled`` with the partial results and skips every
    other symbol as ``cancelled``. Raises ScanNotCancellable for a finished scan.
    """
    if lifecycle.cancel_pending(scan.id):
        scan.refresh_from_db()
        return scan
    updated = Scan.objects.filter(id=scan.id).exclude(status__in=TERMINAL_STATUSES).update(cancel_requested=True)
    scan.refresh_from_db()
    if not updated:
        if scan.status == ScanStatus.CANCELLED:
            return scan
        raise ScanNotCancellable(f"scan {scan.id} already {scan.status}")
    runtime.request_cancel(scan.id)
    store.cancel_requested(scan.id)
    logger.info("scan %s: cancel requested", scan.id, extra={"scan_id": scan.id})
    return scan
