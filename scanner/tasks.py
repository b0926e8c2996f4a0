"""The scan's stage tasks. Each loads the scan by id, calls the engine or a lifecycle
function, persists, and reports progress; the workflow is built in ``scanner.workflow``.

Transient failures are retried; anything else propagates so the workflow's error callback
marks the scan failed. A batch heartbeats when it starts: the watchdog's "no progress" means no
worker took up any of the scan's work (see TECHNIC_SCAN_STALL_SECONDS).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from engine.config import ConfigError
from engine.scan import scan_batch as engine_scan_batch
from market import cache
from market.providers import DataProviderError
from market.providers.base import bars_and_failures, provider_error_code
from market.sources import FETCH_CHUNK, DataSource, instruments_for, provider_requests
from progress import store
from scanner import lifecycle, recovery, runtime, steps
from scanner.alphas import scan_alpha
from scanner.benchmarks import scan_benchmark_of
from scanner.models import Scan, SkipReason
from scanner.workflow import build_workflow

logger = logging.getLogger(__name__)

# A dropped database connection is retried by Celery, with backoff, through the broker (which is
# up). Redis errors are not retried here: a worker's Redis clients wait out an outage inside the
# task (TECHNIC_REDIS_OUTAGE_SECONDS, infra.redis_client), and a Celery retry would have
# to publish through the broker that is down; an error after that wait fails the scan.
TRANSIENT = (OperationalError,)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": True, "retry_backoff_max": 30, "max_retries": 5}


@shared_task(name="scanner.tasks.load_universe", **RETRY)
def load_universe(scan_id: str) -> None:
    """universe_loading: fix the scan's symbols and as_of date."""
    scan = lifecycle.begin(scan_id)
    if scan is None or scan.cancel_requested:
        return
    lifecycle.stage_started(scan_id, "universe_loading", message="Loading the universe")
    context = lifecycle.context_of(scan)
    with _remote_calls(context.source, scan):  # a remote calendar or universe read counts too
        instruments, as_of = steps.load_universe(context.provider, context.config, instruments_for(context.source))
    lifecycle.set_universe(scan_id, instruments, as_of)
    lifecycle.stage_handover(scan_id, "universe_loading", "data_fetching", len(instruments))


@shared_task(name="scanner.tasks.fetch_batch", **RETRY)
def fetch_batch(scan_id: str, index: int, n_batches: int) -> dict[str, Any]:
    """data_fetching, one batch: put the bars its symbols lack into the price cache.

    Idempotent: a second run finds the bars cached. Bars never go through the broker. When the
    cache cannot be reached the batch stores nothing: scan_batch reads the bars from the provider.
    """
    scan = lifecycle.active(scan_id)
    if scan is None or scan.cancel_requested or scan.as_of is None or runtime.is_cancelled(scan_id):
        return {"index": index, "state": "cancelled"}
    lifecycle.heartbeat(scan_id)
    context = lifecycle.context_of(scan)
    symbols = [i.symbol for i in lifecycle.batch_instruments(scan, index, n_batches)]
    # A symbol whose fetch failed stays uncached: scan_batch asks once more and records the error.
    with _remote_calls(context.source, scan):
        for start in range(0, len(symbols), FETCH_CHUNK):
            if runtime.is_cancelled(scan_id):
                return {"index": index, "state": "cancelled"}
            chunk = symbols[start : start + FETCH_CHUNK]
            try:
                hits, misses = cache.fill(
                    context.provider, context.namespace, scan.as_of, context.config.lookback_days, chunk
                )
            except cache.CacheUnavailable:
                store.batch_advanced(scan_id, "data_fetching", index, len(symbols), cache_down=True)
                break
            done = start + len(chunk)
            store.batch_advanced(scan_id, "data_fetching", index, done, cache_hits=hits, cache_misses=misses)
    lifecycle.heartbeat(scan_id)
    return {"index": index, "state": "done", "symbols": len(symbols)}


@shared_task(name="scanner.tasks.gather_fetches", bind=True, **RETRY)
def gather_fetches(self: Task, summaries: list[dict[str, Any]], scan_id: str, n_batches: int) -> str | None:
    """The data_fetching chord's body: the stage ends when every fetch batch has reported, and
    this task sends the rest of the workflow (see ``scanner.workflow``). Returns its id."""
    total = Scan.objects.filter(id=scan_id).values_list("total_symbols", flat=True).first()
    if total is None:  # the scan was deleted meanwhile: nothing is left to do
        return None
    lifecycle.stage_handover(scan_id, "data_fetching", "symbol_scanning", total)
    rest = build_workflow(scan_id, n_batches, start="symbol_scanning")
    # A workflow applied eagerly (in one process, as some tests do) goes on eagerly.
    return str((rest.apply() if self.request.is_eager else rest.apply_async()).id)


@shared_task(
    name="scanner.tasks.scan_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    **RETRY,
)
def scan_batch(scan_id: str, index: int, n_batches: int) -> dict[str, Any]:
    """symbol_scanning, one batch: scan its symbols and persist their rows and skips.

    Idempotent: rows are unique per (scan, symbol). A batch started more than
    TECHNIC_BATCH_MAX_ATTEMPTS times (it keeps killing its worker) skips its symbols as
    ``error`` instead of looping. Returns a small summary for the chord body.
    """
    scan = lifecycle.active(scan_id)
    if scan is None:
        return {"index": index, "state": "scan_finished"}
    lifecycle.heartbeat(scan_id)
    instruments = lifecycle.batch_instruments(scan, index, n_batches)
    symbols = [i.symbol for i in instruments]
    attempts = runtime.batch_attempt(scan_id, index)
    if attempts > settings.TECHNIC_BATCH_MAX_ATTEMPTS:
        logger.error("scan %s batch %d: started %d times without finishing; skipping it", scan_id, index, attempts)
        lost = lifecycle.record_without_outcome(
            scan_id, symbols, SkipReason.ERROR, f"its batch stopped its worker {attempts - 1} times"
        )
        store.batch_advanced(scan_id, "symbol_scanning", index, len(symbols))
        return {"index": index, "state": "abandoned", "skipped": lost}
    if scan.cancel_requested or runtime.is_cancelled(scan_id) or scan.as_of is None:
        return {"index": index, "state": "cancelled"}
    context = lifecycle.context_of(scan)
    config, provider = context.config, context.provider
    model = scan_alpha(scan)  # fixed for the whole scan by the first batch that asks
    bars, missed, cache_down = cache.read_bars(context.namespace, scan.as_of, config.lookback_days, symbols)
    if cache_down:
        store.batch_advanced(scan_id, "symbol_scanning", index, 0, cache_down=True)
    failures: dict[str, str] = {}
    if missed:
        with _remote_calls(context.source, scan):
            fetched, failures = bars_and_failures(provider, missed, scan.as_of, config.lookback_days)
        bars.update(fetched)
    benchmark = None
    if config.screen is not None and config.screen.needs_benchmark:
        with _remote_calls(context.source, scan):
            benchmark = scan_benchmark_of(scan, context)
    reported = 0

    def progressed(done: int, symbol: str) -> None:
        nonlocal reported
        store.batch_advanced(scan_id, "symbol_scanning", index, done, symbol)
        reported = done

    out = engine_scan_batch(
        instruments,
        bars,
        config,
        scan.as_of,
        provider.calendar(),
        on_progress=progressed,
        should_stop=lambda: runtime.is_cancelled(scan_id),
        alpha=model.fit if model else None,
        benchmark=benchmark,
    )
    # Reported before the rows are written: progress rebuilt from the database (after Redis lost
    # it) counts written rows, and this batch must not then count again.
    if len(instruments) > reported:  # symbols skipped after the engine's last report (cancelled)
        store.batch_advanced(scan_id, "symbol_scanning", index, len(instruments))
    lifecycle.record_outcomes(scan_id, out.rows, steps.with_fetch_errors(out.skipped, failures), out.strengths)
    return {"index": index, "state": "done", "results": len(out.rows), "skipped": len(out.skipped)}


@shared_task(name="scanner.tasks.gather_batches", **RETRY)
def gather_batches(summaries: list[dict[str, Any]], scan_id: str) -> dict[str, Any]:
    """The chord body: symbol_scanning ends when every batch has reported."""
    lifecycle.stage_handover(scan_id, "symbol_scanning", "finalization", message="Accounting for every symbol")
    states = [s.get("state") for s in summaries]
    return {"batches": len(summaries), "abandoned": states.count("abandoned"), "cancelled": states.count("cancelled")}


@shared_task(name="scanner.tasks.finalize_scan", **RETRY)
def finalize_scan(scan_id: str) -> str:
    """finalization: account for every symbol, compute metrics, record the final status."""
    scan = lifecycle.finish(scan_id)
    return "deleted" if scan is None else str(scan.status)


@shared_task(name="scanner.tasks.fail_scan")
def fail_scan(request: Any, exc: BaseException, traceback: Any, scan_id: str) -> None:
    """Error callback of the workflow: the scan fails with the error's code and message."""
    _fail(scan_id, exc, getattr(request, "task", "?"))


def _fail(scan_id: Any, exc: BaseException, where: str) -> None:
    code = _error_code(exc)
    if lifecycle.fail(scan_id, code, str(exc) or type(exc).__name__):
        logger.error("scan %s failed in %s: %s: %s", scan_id, where, code, exc)


@contextlib.contextmanager
def _remote_calls(source: DataSource, scan: Scan) -> Iterator[None]:
    """Count the provider's requests under the scan (and stop at its budget). A provider error
    fails the scan here, with its own code, before propagating: from a chord's header task the
    workflow's error callback would only see a ChordError naming it."""
    try:
        with provider_requests(source, scan.id, scan.total_symbols):
            yield
    except DataProviderError as err:
        _fail(scan.id, err, "the data provider")
        raise


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return "INVALID_CONFIG"
    if isinstance(exc, DataProviderError):
        return provider_error_code(exc)
    return "WORKFLOW_ERROR"


@shared_task(name="scanner.tasks.watchdog")
def watchdog() -> int:
    """Resume every unfinished scan with no progress for TECHNIC_SCAN_RESUME_SECONDS (Redis may
    have lost its queued tasks: ``scanner.recovery``), at most once in that time, and fail those
    with none for TECHNIC_SCAN_STALL_SECONDS. Returns how many it failed."""
    now = timezone.now()
    limit, resume_after = settings.TECHNIC_SCAN_STALL_SECONDS, settings.TECHNIC_SCAN_RESUME_SECONDS
    failed = 0
    for scan in lifecycle.stalled(now - timedelta(seconds=min(limit, resume_after))):
        assert scan.heartbeat_at is not None, "stalled() selects scans by their heartbeat"
        if scan.heartbeat_at >= now - timedelta(seconds=limit):
            if runtime.claim_resume(scan.id, resume_after):
                recovery.scan_resume(scan)
            continue
        message = (
            f"no progress for over {limit} s (last at {scan.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC, stage "
            f"{scan.current_stage or 'none'}): the workers stopped or the workflow's state in Redis was lost"
        )
        if lifecycle.fail(scan.id, "SCAN_STALLED", message):
            logger.warning("watchdog failed scan %s: %s", scan.id, message)
            failed += 1
    return failed


@shared_task(name="scanner.tasks.purge_finished_scans")
def purge_finished_scans() -> int:
    """Beat task: delete the finished scans older than TECHNIC_SCAN_RETENTION_DAYS (none when
    it is 0); returns how many were deleted. Idempotent."""
    from scanner.retention import retention_cutoff, scan_purge

    before = retention_cutoff()
    if before is None:
        return 0
    deleted = scan_purge(before)
    if deleted:
        logger.info("retention: deleted %d finished scans that ended before %s", deleted, before.isoformat())
    return deleted
