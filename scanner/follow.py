"""Following a scan that runs on the workers, through the same tracker the display uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from progress.tracker import STAGES, ProgressTracker
from scanner import runtime
from scanner.models import Scan

COUNTER_OF = {"data_fetching": "fetched", "symbol_scanning": "scanned"}


def follow_scan(
    scan_id: Any, on_update: Callable[[ProgressTracker], None], poll_seconds: float = 0.1, timeout: float | None = None
) -> Scan:
    """Poll the scan's row and progress counters until it finishes; returns the final row.

    Raises TimeoutError when ``timeout`` seconds pass first.
    """
    tracker = ProgressTracker(str(scan_id))
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        scan = Scan.objects.get(id=scan_id)
        _mirror(scan, runtime.counters(scan_id), tracker, on_update)
        if scan.is_finished:
            tracker.finish(str(scan.status), scan.error_message or f"scan {scan.status}")
            on_update(tracker)
            return scan
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"scan {scan_id} did not finish within {timeout} s")
        time.sleep(poll_seconds)


def _mirror(
    scan: Scan, counters: dict[str, int], tracker: ProgressTracker, on_update: Callable[[ProgressTracker], None]
) -> None:
    """Replay what changed since the last poll, one transition at a time, so a display sees
    every stage even when a stage started and ended between two polls."""
    total = scan.total_symbols
    for stage in STAGES:
        state = tracker.stage_status(stage)
        started = getattr(scan, f"{stage}_started_at")
        ended = getattr(scan, f"{stage}_ended_at")
        units = total if stage in COUNTER_OF else 1
        if started and state == "pending":
            tracker.start_stage(stage, units, f"{stage.replace('_', ' ').capitalize()}")
            on_update(tracker)
        if stage in COUNTER_OF and started and not ended:
            done = counters.get(COUNTER_OF[stage], 0)
            label = "Fetching bars" if stage == "data_fetching" else "Scanning"
            tracker.advance(stage, done, f"{label} ({min(done, total)}/{total})")
            on_update(tracker)
        if ended and state != "completed":
            tracker.complete_stage(stage)
            on_update(tracker)
