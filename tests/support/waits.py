"""Waiting for what worker processes do, with a deadline and a message naming what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scanner.models import TERMINAL_STATUSES, Scan


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def wait_finished(scan_id: Any, timeout: float = 120) -> Scan:
    wait_until(lambda: Scan.objects.get(id=scan_id).status in TERMINAL_STATUSES, timeout, f"scan {scan_id} to finish")
    return Scan.objects.get(id=scan_id)
