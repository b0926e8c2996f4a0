"""State transitions and persistence of a scan, for the stage tasks.

Every transition is a conditional update (``filter(id=..., <expected state>).update(...)``)
so redelivered or concurrent tasks cannot apply it twice; per-symbol rows are unique on
(scan, symbol) and inserted with ``ON CONFLICT DO NOTHING``, so writing a batch twice is harmless,
and a symbol that already has an outcome of one kind (result or skip) gets none of the other.

Every symbol of a finished scan has exactly one outcome: finalization skips those without one
(``cancelled`` after a cancel, else ``error``), a failure skips them as ``error`` with its
reason, a cancel of a scan no worker has begun skips them all as ``cancelled``. The universe is
recorded when the scan is created, so it is known in every case.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cachetools import LRUCache
from django.db import connection, models, transaction
from django.db.models import Count, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from engine import ENGINE_VERSION
from engine.config import ScanConfig
from engine.scan import Skip
from engine.screens.screen import cross_section
from engine.types import Instrument
from infra import metrics as recorded
from market.providers import DataProviderError, MarketDataProvider
from market.sources import DataSource, provider_calls, provider_for
from progress import store
from progress.tracker import STAGES
from scanner.alphas import scan_alpha_metrics
from scanner.models import TERMINAL_STATUSES, Scan, ScanResult, ScanSkip, ScanStatus, ScanStrength, SkipReason
from scanner.steps import outcome_metrics, screen_metrics

logger = logging.getLogger(__name__)

FAILURE_DETAIL_CHARS = 300  # of the failure's message, in each symbol's skip detail


def config_of(scan: Scan) -> ScanConfig:
    data = dict(scan.config)
    data["symbols"] = tuple(data.get("symbols") or ())
    data["sectors"] = tuple(data.get("sectors") or ())
    data["as_of"] = date.fromisoformat(data["as_of"]) if data.get("as_of") else None
    return ScanConfig(**data)


def source_of(scan: Scan) -> DataSource:
    return DataSource(scan.data_provider, scan.data_path, scan.universe_path)


@dataclass(frozen=True)
class ScanContext:
    """What a stage task needs of its scan besides the row, built once per task."""

    config: ScanConfig
    source: DataSource
    provider: MarketDataProvider
    namespace: str  # the price cache's namespace of the scan's data source


def context_of(scan: Scan) -> ScanContext:
    """The scan's config, data source, provider (cached per process) and cache namespace."""
    source = source_of(scan)
    return ScanContext(config_of(scan), source, provider_for(source), source.cache_namespace())


def begin(scan_id: Any) -> Scan | None:
    """pending → running (once). Returns the scan unless it already finished. Its live
    progress turns running with its first stage (one push, not two)."""
    now = timezone.now()
    Scan.objects.filter(id=scan_id, status=ScanStatus.PENDING).update(
        status=ScanStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    return active(scan_id)


def active(scan_id: Any) -> Scan | None:
    """The scan if it is still unfinished, else None (stage tasks then do nothing; that
    includes a scan deleted while its tasks were queued). Its universe is not loaded:
    ``batch_instruments`` reads it once per process."""
    scan = Scan.objects.defer("universe", "metrics").filter(id=scan_id).first()
    return None if scan is None or scan.is_finished else scan


def stage_started(scan_id: Any, stage: str, total: int = 1, message: str = "") -> None:
    """Record the stage's start (of ``total`` units) the first time only; it becomes current."""
    now = timezone.now()
    unfinished = Scan.objects.exclude(status__in=TERMINAL_STATUSES)
    if unfinished.filter(id=scan_id, **{f"{stage}_started_at__isnull": True}).update(
        **{f"{stage}_started_at": now}, current_stage=stage, heartbeat_at=now
    ):
        store.stage_started(scan_id, stage, total, message)
        logger.info("scan %s: %s started (%d units)", scan_id, stage, total, extra={"scan_id": scan_id})


def stage_handover(scan_id: Any, ended: str, started: str, total: int = 1, message: str = "") -> None:
    """``ended`` finishes and ``started`` (of ``total`` units) begins at the same moment, once:
    the next stage's time runs from the previous one's end, its tasks' queueing included, and
    clients get one message for both changes."""
    now = timezone.now()
    unfinished = Scan.objects.exclude(status__in=TERMINAL_STATUSES)  # a finished scan's times stand
    if unfinished.filter(id=scan_id, **{f"{ended}_ended_at__isnull": True}).update(
        **{f"{ended}_ended_at": now, f"{started}_started_at": Coalesce(f"{started}_started_at", Value(now))},
        current_stage=started,
        heartbeat_at=now,
    ):
        snapshot = store.handover(scan_id, ended, started, total, message)
        seconds = snapshot["stages"][ended]["seconds"] if snapshot else None
        logger.info(
            "scan %s: %s finished in %s s, %s started (%d units)",
            scan_id, ended, seconds, started, total, extra={"scan_id": scan_id},
        )  # fmt: skip


def heartbeat(scan_id: Any) -> None:
    Scan.objects.filter(id=scan_id).update(heartbeat_at=timezone.now())


def universe_rows(instruments: Sequence[Instrument]) -> list[list[str]]:
    """Instruments as ``Scan.universe`` stores them."""
    return [[i.symbol, i.name, i.sector] for i in instruments]


def set_universe(scan_id: Any, instruments: Sequence[Instrument], as_of: date) -> None:
    Scan.objects.filter(id=scan_id).update(
        universe=universe_rows(instruments), total_symbols=len(instruments), as_of=as_of
    )


def universe_of(scan: Scan) -> list[Instrument]:
    return [Instrument(symbol, name, sector) for symbol, name, sector in scan.universe]


# A scan's universe never changes once set and a large one is slow to decode, so each worker
# process keeps the universes of the scans it is working on.
_UNIVERSES: LRUCache[str, list[Instrument]] = LRUCache(maxsize=8)


def _fixed_universe(scan_id: Any) -> list[Instrument]:
    key = str(scan_id)
    universe = _UNIVERSES.get(key)
    if universe is None:
        raw = Scan.objects.values_list("universe", flat=True).get(id=scan_id)
        universe = [Instrument(symbol, name, sector) for symbol, name, sector in raw]
        if universe:  # empty on a scan recorded without one: nothing to keep
            _UNIVERSES[key] = universe
    return universe


def batch_instruments(scan: Scan, index: int, n_batches: int) -> list[Instrument]:
    """Batch ``index`` of ``n_batches`` contiguous, balanced slices of the universe."""
    universe = _fixed_universe(scan.id)
    start, end = index * len(universe) // n_batches, (index + 1) * len(universe) // n_batches
    return universe[start:end]


def record_outcomes(
    scan_id: Any,
    rows: Sequence[dict[str, Any]],
    skipped: Sequence[Skip],
    strengths: Mapping[str, float | None] | None = None,
) -> None:
    """Persist one batch's rows, skips and relative strength scores (``BatchOutput.strengths``);
    a second write of the same symbols changes nothing, and a symbol that already has an outcome
    of the other kind keeps that one.

    Plain ``INSERT … ON CONFLICT DO NOTHING`` through ``executemany``: on this, the hottest
    write of a scan, ``bulk_create`` is slower on both databases.
    """
    scan_key = Scan._meta.pk.get_db_prep_value(scan_id, connection)
    as_json = connection.ops.adapt_json_value
    with transaction.atomic(), connection.cursor() as cursor:
        # Updating the scan's row first serialises the scan's writers (PostgreSQL locks the row
        # until commit; SQLite's IMMEDIATE transactions lock the database), so the reads below see
        # every outcome committed before: a late batch cannot give a skipped symbol a result too.
        Scan.objects.filter(id=scan_id).update(heartbeat_at=timezone.now())
        if rows:
            skipped_already = _with_outcome(ScanSkip, scan_id, [r["symbol"] for r in rows])
            rows = [r for r in rows if r["symbol"] not in skipped_already]
        if skipped:
            scanned_already = _with_outcome(ScanResult, scan_id, [s.symbol for s in skipped])
            skipped = [s for s in skipped if s.symbol not in scanned_already]
        if rows:
            cursor.executemany(
                _insert_ignoring_conflicts(ScanResult, ("scan_id", "symbol", "sector", "tech_rating", "signal", "row")),
                [(scan_key, r["symbol"], r["sector"], r["tech_rating"], r["signal"], as_json(r, None)) for r in rows],
            )
        if skipped:
            cursor.executemany(
                _insert_ignoring_conflicts(ScanSkip, ("scan_id", "symbol", "reason", "detail")),
                [(scan_key, s.symbol, s.reason, s.detail) for s in skipped],
            )
        if strengths:
            cursor.executemany(
                _insert_ignoring_conflicts(ScanStrength, ("scan_id", "symbol", "score")),
                [(scan_key, symbol, score) for symbol, score in strengths.items()],
            )


def _with_outcome(model: type[ScanResult] | type[ScanSkip], scan_id: Any, symbols: Sequence[str]) -> set[str]:
    """Which of ``symbols`` already have a ``model`` row in the scan."""
    return set(model.objects.filter(scan_id=scan_id, symbol__in=symbols).values_list("symbol", flat=True))


def _insert_ignoring_conflicts(model: type[models.Model], columns: Sequence[str]) -> str:
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"


def record_without_outcome(scan_id: Any, symbols: Sequence[str], reason: str, detail: str) -> int:
    """Skip every symbol of ``symbols`` that has neither a result nor a skip yet."""
    done = set(ScanResult.objects.filter(scan_id=scan_id).values_list("symbol", flat=True))
    done |= set(ScanSkip.objects.filter(scan_id=scan_id).values_list("symbol", flat=True))
    missing = [s for s in symbols if s not in done]
    record_outcomes(scan_id, [], [Skip(s, reason, detail) for s in missing])
    return len(missing)


def apply_cross_section(scan: Scan) -> int:
    """The screen's clauses and ranking that use ``rs_rating``, over the scan's eligible symbols
    recorded so far (``engine.screens.screen.cross_section``): rows they reject become
    ``not_matched`` skips, the others get their rs_rating values. Returns how many were
    rejected; a second call finds nothing more to do."""
    screen = config_of(scan).screen
    if screen is None or not screen.needs_strength:
        return 0
    with transaction.atomic():
        results = list(ScanResult.objects.select_for_update().filter(scan_id=scan.id).order_by("symbol"))
        strengths = dict(ScanStrength.objects.filter(scan_id=scan.id).values_list("symbol", "score"))
        kept, rejected = cross_section(screen, [r.row for r in results], strengths)
        by_symbol = {r.symbol: r for r in results}
        updated = []
        for row in kept:
            result = by_symbol[row["symbol"]]
            if result.row != row:
                result.row = row
                updated.append(result)
        ScanResult.objects.bulk_update(updated, ["row"], batch_size=500)
        if rejected:
            ScanResult.objects.filter(scan_id=scan.id, symbol__in=[r.symbol for r in rejected]).delete()
            ScanSkip.objects.bulk_create(
                [
                    ScanSkip(scan_id=scan.id, symbol=r.symbol, reason=SkipReason.NOT_MATCHED, detail=r.detail)
                    for r in rejected
                ],
                ignore_conflicts=True,
            )
    return len(rejected)


def finish(scan_id: Any) -> Scan | None:
    """running → completed (or cancelled when a cancel was requested), once.

    Every universe symbol without an outcome is skipped: ``cancelled`` after a cancel,
    otherwise ``error`` (its batch was lost). The screen's cross-sectional clauses are applied
    (``apply_cross_section``). Metrics are computed here.
    """
    scan = Scan.objects.filter(id=scan_id).first()
    if scan is None or scan.is_finished:
        return scan
    apply_cross_section(scan)
    symbols = [i.symbol for i in universe_of(scan)]
    lost = 0
    if scan.cancel_requested:
        accounted = record_without_outcome(
            scan_id, symbols, SkipReason.CANCELLED, "scan cancelled before this symbol was scanned"
        )
    else:
        accounted = lost = record_without_outcome(
            scan_id, symbols, SkipReason.ERROR, "no outcome was recorded for this symbol"
        )
        if lost:
            logger.error("scan %s: %d symbols had no outcome at finalization", scan_id, lost)
    scan.refresh_from_db()
    now = timezone.now()
    scan.status = ScanStatus.CANCELLED if scan.cancel_requested else ScanStatus.COMPLETED
    scan.finalization_ended_at = scan.finished_at = now
    metrics = metrics_of(scan, unscanned_errors=lost)
    if Scan.objects.filter(id=scan_id, status=ScanStatus.RUNNING).update(
        status=scan.status, finalization_ended_at=now, finished_at=now, heartbeat_at=now, metrics=metrics
    ):
        done = f"{metrics['results']} results, {metrics['skipped']} skipped"
        if metrics["cache"]["available"] is False:
            done += " (price cache unavailable: bars read uncached from the provider)"
        scanned = metrics["results"] + metrics["skipped"] - accounted
        _keep_final_progress(scan_id, store.finished(scan_id, str(scan.status), done, scan, scanned))
        recorded.scan_finished(str(scan.status), metrics)
        logger.info(
            "scan %s %s in %s s: %s", scan_id, scan.status, metrics["elapsed_seconds"], done, extra={"scan_id": scan_id}
        )
        if scan.status == ScanStatus.COMPLETED:
            store.learn_rates(scan.total_symbols, metrics["stage_seconds"])
    scan.refresh_from_db()
    return scan


def _keep_final_progress(scan_id: Any, snapshot: dict[str, Any] | None) -> None:
    """The last snapshot goes on the row, for clients that come after Redis forgot it."""
    if snapshot is not None:
        Scan.objects.filter(id=scan_id).update(progress=snapshot)


def fail(scan_id: Any, code: str, message: str) -> bool:
    """Any unfinished state → failed, once. Returns whether this call failed it.

    Every universe symbol without an outcome is then skipped as ``error``, the failure's code
    and message in its detail. A batch still running writes nothing for those symbols afterwards
    (``record_outcomes`` leaves a skipped symbol alone), and what it wrote before the skips were
    recorded keeps its outcome: every symbol ends with exactly one.
    """
    now = timezone.now()
    # One transaction: whoever sees the scan failed sees every symbol accounted for and the
    # metrics; the final snapshot is pushed after it, so a client reading the results on that
    # push finds them.
    with transaction.atomic():
        if not (
            Scan.objects.filter(id=scan_id)
            .exclude(status__in=TERMINAL_STATUSES)
            .update(status=ScanStatus.FAILED, error_code=code, error_message=message[:2000], finished_at=now)
        ):
            return False
        scan = Scan.objects.get(id=scan_id)
        apply_cross_section(scan)
        detail = f"not scanned: the scan failed ({code}: {message[:FAILURE_DETAIL_CHARS]})"
        accounted = record_without_outcome(scan_id, [i.symbol for i in universe_of(scan)], SkipReason.ERROR, detail)
        metrics = metrics_of(scan, unscanned_errors=accounted)
        Scan.objects.filter(id=scan_id).update(metrics=metrics)
    scanned = metrics["results"] + metrics["skipped"] - accounted
    _keep_final_progress(scan_id, store.finished(scan_id, ScanStatus.FAILED, f"{code}: {message}"[:500], scan, scanned))
    recorded.scan_finished(ScanStatus.FAILED, metrics, error_code=code)
    return True


def cancel_pending(scan_id: Any) -> bool:
    """pending → cancelled at once, before any worker began the scan: every symbol of the
    universe recorded at its creation is skipped as ``cancelled``. Returns whether this call
    cancelled it (False when a worker had begun it, it had finished, or it has no recorded
    universe: then the workflow's finalization accounts for it). Its queued tasks later find it
    finished and do nothing."""
    scan = Scan.objects.filter(id=scan_id, status=ScanStatus.PENDING).first()
    if scan is None or not scan.universe:
        return False
    now = timezone.now()
    with transaction.atomic():
        if not Scan.objects.filter(id=scan_id, status=ScanStatus.PENDING).update(
            status=ScanStatus.CANCELLED, cancel_requested=True, finished_at=now, heartbeat_at=now
        ):
            return False
        symbols = [i.symbol for i in universe_of(scan)]
        record_without_outcome(scan_id, symbols, SkipReason.CANCELLED, "scan cancelled before it started")
        scan.refresh_from_db()
        metrics = metrics_of(scan)
        Scan.objects.filter(id=scan_id).update(metrics=metrics)
    done = f"cancelled before it started: {metrics['skipped']} skipped"
    _keep_final_progress(scan_id, store.finished(scan_id, ScanStatus.CANCELLED, done, scan, 0))
    recorded.scan_finished(ScanStatus.CANCELLED, metrics)
    logger.info("scan %s cancelled before it started", scan_id, extra={"scan_id": scan_id})
    return True


def metrics_of(scan: Scan, unscanned_errors: int = 0) -> dict[str, Any]:
    """Counts, per-stage seconds, throughput and cache figures of a scan as it stands.
    ``unscanned_errors``: ``error`` skips recorded for symbols never scanned (a failure's, or
    those finalization found without an outcome), which ``scanned_symbols`` leaves out."""
    reasons = dict(scan.skips.values_list("reason").annotate(n=Count("id")).values_list("reason", "n"))
    results = scan.results.count()
    timings = scan.stage_timings()
    elapsed = (scan.finished_at - scan.started_at).total_seconds() if scan.finished_at and scan.started_at else None
    progress = store.snapshot(scan.id)
    return {
        "engine_version": ENGINE_VERSION,
        "data_provider": scan.data_provider,
        "synthetic": scan.synthetic,
        **outcome_metrics(scan.total_symbols, results, reasons, elapsed),
        "scanned_symbols": results + sum(reasons.values()) - reasons.get(SkipReason.CANCELLED, 0) - unscanned_errors,
        "stage_seconds": {stage: t["seconds"] for stage, t in timings.items()},
        "batch_size": scan.batch_size,
        "batches": scan.n_batches,
        "alpha": scan_alpha_metrics(scan),
        "screen": screen_metrics(config_of(scan), scan.benchmark.get("label") if scan.benchmark else None),
        "cache": progress["cache"] if progress else {"hits": None, "misses": None, "hit_rate": None, "available": None},
        "data_provider_calls": _provider_calls(scan),
        "eta_accuracy": store.eta_accuracy(
            scan.id,
            {stage: _epoch(getattr(scan, f"{stage}_ended_at")) for stage in STAGES},
            scan.finished_at.timestamp() if scan.finished_at else time.time(),
        ),
    }


def _provider_calls(scan: Scan) -> dict[str, Any]:
    """The scan's remote requests and the circuit breaker, or why they cannot be read."""
    try:
        return provider_calls(source_of(scan), scan.id, scan.total_symbols)
    except DataProviderError as err:  # e.g. a process without the provider's key
        return {"error": str(err)}


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def stalled(before: datetime) -> list[Scan]:
    """Unfinished scans whose last progress is older than ``before``."""
    return list(Scan.objects.exclude(status__in=TERMINAL_STATUSES).filter(heartbeat_at__lt=before))
