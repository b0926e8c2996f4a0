"""The one place the scan workflow is built.

``universe_loading`` → ``data_fetching`` → ``symbol_scanning`` → ``finalization``, where
``data_fetching`` and ``symbol_scanning`` are chords over the same batches: one
``fetch_batch`` (then one ``scan_batch``) per batch of symbols, gathered by
``gather_fetches`` (then ``gather_batches``). Signatures are immutable and carry only the scan
id and batch numbers; bars travel through the price cache, never through the broker.

The workflow is sent in two parts. A chord's body travels inside every header task's message,
so a ``symbol_scanning`` chord built up front would be copied into each of the N
``fetch_batch`` messages: N² signatures to publish. So ``gather_fetches`` sends the rest of the
workflow, built here from ``symbol_scanning`` on, with the same error callback. (Sent, not
``Task.replace``: a replaced task ends by raising, and Celery's recording of that exception holds
``gather_fetches`` and its prefetch slot, which the second scanning batch waits for, longer.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from celery import chain, chord, signature
from celery.canvas import Signature

# Batch i of any scan gets priority i // BATCHES_PER_PRIORITY (0 is first, 9 is last), so the
# first batches of a newly started scan overtake the later batches of a long one.
BATCHES_PER_PRIORITY = 2


def batch_priority(index: int) -> int:
    return min(9, index // BATCHES_PER_PRIORITY)


def _task(name: str, *args: Any, priority: int = 0) -> Signature:
    return signature(f"scanner.tasks.{name}", args=args, immutable=True).set(priority=priority)


def _batches(name: str, sid: str, n_batches: int, indexes: Sequence[int]) -> list[Signature]:
    return [_task(name, sid, i, n_batches, priority=batch_priority(i)) for i in indexes]


Start = Literal["universe_loading", "data_fetching", "symbol_scanning", "finalization"]


def build_workflow(
    scan_id: Any, n_batches: int, start: Start = "universe_loading", batches: Sequence[int] | None = None
) -> Signature:
    """The workflow of a scan from ``start`` on: ``symbol_scanning`` is the part
    ``gather_fetches`` continues with; ``data_fetching``, ``symbol_scanning`` with only the
    ``batches`` still to do, and ``finalization`` are what the watchdog sends again to resume a
    scan whose queued tasks were lost (``scanner.recovery``)."""
    sid = str(scan_id)
    indexes = range(n_batches) if batches is None else batches
    fail = signature("scanner.tasks.fail_scan", args=(sid,))
    if start in ("universe_loading", "data_fetching"):
        gather = signature("scanner.tasks.gather_fetches", args=(sid, n_batches)).set(priority=0)
        flow = chord(_batches("fetch_batch", sid, n_batches, indexes), gather)
        if start == "universe_loading":
            flow = chain(_task("load_universe", sid), flow)
    elif start == "symbol_scanning":
        header = _batches("scan_batch", sid, n_batches, indexes)
        if header:
            scanning = chord(header, signature("scanner.tasks.gather_batches", args=(sid,)).set(priority=0))
        else:  # every batch recorded its outcomes, but the chord's body never ran
            scanning = _task("gather_batches", [], sid)
        flow = chain(scanning, _task("finalize_scan", sid))
    else:
        flow = _task("finalize_scan", sid)
    flow.on_error(fail)
    return flow
