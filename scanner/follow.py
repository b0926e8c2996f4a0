"""Following a scan that runs on the workers: the snapshots its workers record, as the web
clients get them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from progress.store import current_snapshot
from scanner.models import Scan


def follow_scan(
    scan_id: Any, on_update: Callable[[dict[str, Any]], None], poll_seconds: float = 0.1, timeout: float | None = None
) -> Scan:
    """Read the scan's progress snapshot every ``poll_seconds`` until it finishes; returns the
    final row. Raises TimeoutError when ``timeout`` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_seq = -1
    while True:
        scan = Scan.objects.get(id=scan_id)
        snap = current_snapshot(scan)
        if snap["seq"] != last_seq or scan.is_finished:
            last_seq = snap["seq"]
            on_update(snap)
        if scan.is_finished:
            return scan
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"scan {scan_id} did not finish within {timeout} s")
        time.sleep(poll_seconds)
