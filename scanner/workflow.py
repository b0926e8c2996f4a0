"""The one place the scan workflow is built.

``universe_loading`` → ``data_fetching`` → ``symbol_scanning`` → ``finalization``, where
``symbol_scanning`` is a chord: one ``scan_batch`` per batch of symbols, gathered by
``gather_batches``. ``data_fetching`` fans out over the same batches (``fetch_batch``,
gathered by ``gather_fetches``), so fetching uses every worker too. Signatures are immutable
and carry only the scan id and batch numbers; bars travel through the price cache, never
through the broker or the result backend.
"""

from __future__ import annotations

from typing import Any

from celery import chain, chord
from celery.canvas import Signature

from scanner import tasks

# Batch i of any scan gets priority i // BATCHES_PER_PRIORITY (0 is first, 9 is last), so the
# first batches of a newly started scan overtake the later batches of a long one.
BATCHES_PER_PRIORITY = 2


def batch_priority(index: int) -> int:
    return min(9, index // BATCHES_PER_PRIORITY)


def build_workflow(scan_id: Any, n_batches: int) -> Signature:
    sid = str(scan_id)
    fetches = [tasks.fetch_batch.si(sid, i, n_batches).set(priority=batch_priority(i)) for i in range(n_batches)]
    scans = [tasks.scan_batch.si(sid, i, n_batches).set(priority=batch_priority(i)) for i in range(n_batches)]
    flow = chain(
        tasks.load_universe.si(sid).set(priority=0),
        chord(fetches, tasks.gather_fetches.s(sid).set(priority=0)),
        chord(scans, tasks.gather_batches.s(sid).set(priority=0)),
        tasks.finalize_scan.si(sid).set(priority=0),
    )
    flow.on_error(tasks.fail_scan.s(sid))
    return flow
