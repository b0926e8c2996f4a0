"""Resuming a scan whose queued work was lost.

The database row is a scan's record; its queued tasks and chord counters live in Redis. kombu's
Redis transport pops a message off the queue before it records it as delivered, so a worker
killed between the two (SIGKILL, the OOM killer, a lost machine) loses that message for good, and
a ``FLUSHALL`` or a Redis that lost its data loses them all. The scan then makes no progress.
The watchdog (``scanner.tasks.watchdog``) resumes it once TECHNIC_SCAN_RESUME_SECONDS pass
without progress, longer than any task may run, so nothing it sends again can still be running:
it sends again, from the stage the row says is unfinished, the work not yet recorded. Every
stage is idempotent, so work that was only delayed (a message waiting out the visibility
timeout) and then runs twice changes nothing.
"""

from __future__ import annotations

import logging

from scanner import lifecycle
from scanner.models import Scan, ScanResult, ScanSkip
from scanner.workflow import Start, build_workflow

logger = logging.getLogger(__name__)


def unfinished_batches(scan: Scan) -> list[int]:
    """The scanning batches of ``scan`` with a symbol that has no outcome yet."""
    done = set(ScanResult.objects.filter(scan=scan).values_list("symbol", flat=True))
    done |= set(ScanSkip.objects.filter(scan=scan).values_list("symbol", flat=True))
    return [
        index
        for index in range(scan.n_batches)
        if any(i.symbol not in done for i in lifecycle.batch_instruments(scan, index, scan.n_batches))
    ]


def scan_resume(scan: Scan) -> Start:
    """Send again the unfinished part of ``scan``'s workflow; returns the stage it resumes at.
    Safe to call for a scan whose work is only delayed (see the module docstring)."""
    batches: list[int] | None = None
    start: Start
    if scan.universe_loading_ended_at is None:
        start = "universe_loading"
    elif scan.data_fetching_ended_at is None:
        start = "data_fetching"
    elif scan.symbol_scanning_ended_at is None:
        start, batches = "symbol_scanning", unfinished_batches(scan)
    else:
        start = "finalization"
    build_workflow(scan.id, scan.n_batches, start=start, batches=batches).apply_async()
    logger.warning(
        "scan %s: no progress since %s; resumed at %s%s",
        scan.id,
        scan.heartbeat_at,
        start,
        "" if batches is None else f" ({len(batches)} of {scan.n_batches} batches)",
        extra={"scan_id": scan.id},
    )
    return start
