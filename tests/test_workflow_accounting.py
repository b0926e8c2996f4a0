"""Accounting and progress that stay true, with a real redis-server and real Celery workers:
a cancelled or failed scan gives every requested symbol exactly one outcome, a redelivered
batch is counted once, a cancelled stage shows ``cancelled``, and progress Redis lost is rebuilt
from the database."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from engine.config import ScanConfig
from market.sources import DataSource
from progress import store
from progress.tracker import STAGES
from scanner import lifecycle, services, tasks
from scanner.lifecycle import batch_instruments
from scanner.models import Scan, ScanResult, ScanSkip
from scanner.services import scan_cancel, scan_create
from scanner.workflow import build_workflow
from tests.support.processes import RedisServer, Workers, scan_env, start_scan_from
from tests.support.waits import wait_finished, wait_until
from tests.support.worker_app import app

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def accounted(scan: Scan) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The scan's results and skips (symbol, reason, detail), each universe symbol exactly once."""
    scan.refresh_from_db()
    results = list(ScanResult.objects.filter(scan=scan).values_list("symbol", flat=True))
    skips = list(ScanSkip.objects.filter(scan=scan).values_list("symbol", "reason", "detail"))
    names = results + [s for s, _, _ in skips]
    assert len(names) == len(set(names)), "a symbol has more than one outcome"
    assert sorted(names) == sorted(symbol for symbol, _, _ in scan.universe)
    assert len(names) == scan.total_symbols
    assert (scan.metrics["results"], scan.metrics["skipped"]) == (len(results), len(skips))
    return results, skips


def stage_statuses(snap: dict[str, Any]) -> list[str]:
    return [snap["stages"][stage]["status"] for stage in STAGES]


def same_snapshot(kept: dict[str, Any], live: dict[str, Any] | None) -> None:
    """The final snapshot kept on the row is the one Redis holds (but for when it was built)."""
    assert live is not None
    assert {k: v for k, v in kept.items() if k != "updated_at"} == {k: v for k, v in live.items() if k != "updated_at"}


def run_workflow(scan: Scan) -> str:
    """Send the scan's whole workflow and wait for its end; returns what finalize_scan answered."""
    rest_id = build_workflow(scan.id, scan.n_batches).apply_async().get(timeout=60)
    return str(app.AsyncResult(rest_id).get(timeout=60))


def wait_final(scan_id: Any, timeout: float) -> Scan:
    """The scan once finished and its final snapshot kept on the row (just after its status)."""
    wait_finished(scan_id, timeout)
    wait_until(lambda: bool(Scan.objects.get(id=scan_id).progress), 10, f"scan {scan_id}'s final snapshot")
    return Scan.objects.get(id=scan_id)


def scanned(scan: Scan) -> int:
    snap = store.snapshot(scan.id)
    return 0 if snap is None else int(snap["stages"]["symbol_scanning"]["current"])


# --- Cancelled -------------------------------------------------------------------------------


def test_cancelling_a_pending_scan_ends_it_at_once_with_every_symbol_skipped_as_cancelled(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "scan_start", lambda scan: None)  # queued behind other work
    scan = scan_create(owner=None, config=ScanConfig(max_symbols=300), batch_size=50)
    assert scan_cancel(scan).status == "cancelled"
    results, skips = accounted(scan)
    assert results == [] and {reason for _, reason, _ in skips} == {"cancelled"}
    final = store.current_snapshot(scan)
    assert final["status"] == "cancelled" and set(stage_statuses(final)) == {"cancelled"}
    same_snapshot(scan.progress, store.snapshot(scan.id))

    assert run_workflow(scan) == "cancelled"  # its queued workflow comes later and changes nothing
    after = Scan.objects.get(id=scan.id)
    assert (after.status, after.finished_at, after.metrics) == ("cancelled", scan.finished_at, scan.metrics)
    assert all(t["started"] is None and t["ended"] is None for t in after.stage_timings().values())
    assert accounted(after) == (results, skips)
    assert scan_cancel(after).status == "cancelled"


def test_a_scan_cancelled_after_a_worker_began_it_but_before_its_universe_loaded_skips_every_symbol(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "scan_start", lambda scan: None)
    scan = scan_create(owner=None, config=ScanConfig(max_symbols=300), batch_size=50)
    lifecycle.begin(scan.id)  # what load_universe does first
    assert scan_cancel(scan).status == "running"
    assert run_workflow(scan) == "cancelled"
    results, skips = accounted(scan)
    assert results == [] and {reason for _, reason, _ in skips} == {"cancelled"}
    assert set(stage_statuses(scan.progress)) == {"cancelled"}


def test_cancelling_during_data_fetching_shows_the_stages_it_cut_short_as_cancelled(workers: Workers) -> None:
    scan = scan_create(owner=None, config=ScanConfig(), batch_size=100)

    def fetching() -> bool:
        snap = store.snapshot(scan.id)
        return snap is not None and 0 < snap["stages"]["data_fetching"]["current"] < scan.total_symbols // 2

    wait_until(fetching, 60, "data fetching to be under way")
    scan_cancel(scan)
    scan = wait_final(scan.id, timeout=30)
    assert scan.status == "cancelled"
    accounted(scan)
    final = scan.progress
    assert stage_statuses(final) == ["completed", "cancelled", "cancelled", "cancelled"]
    assert final["stages"]["data_fetching"]["progress"] < 100
    assert final["overall_progress"] < 100
    same_snapshot(final, store.snapshot(scan.id))


# --- Failed ----------------------------------------------------------------------------------


def test_a_pending_scan_the_watchdog_fails_skips_every_requested_symbol_as_error(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "scan_start", lambda scan: None)  # no worker ever takes it
    scan = scan_create(owner=None, config=ScanConfig(max_symbols=120))
    assert lifecycle.fail(scan.id, "SCAN_STALLED", "no progress for over 600 s")
    results, skips = accounted(scan)
    assert results == [] and {reason for _, reason, _ in skips} == {"error"}
    assert all("SCAN_STALLED: no progress" in detail for _, _, detail in skips)
    assert scan.metrics["scanned_symbols"] == 0
    assert scan.progress["status"] == "failed"


def test_a_scan_failed_while_batches_run_accounts_for_every_symbol_once(workers: Workers) -> None:
    scan = scan_create(owner=None, config=ScanConfig(), batch_size=100)
    wait_until(lambda: 0 < scanned(scan) < scan.total_symbols // 2, 60, "scanning to be under way")
    written = ScanResult.objects.filter(scan=scan).count() + ScanSkip.objects.filter(scan=scan).count()
    assert lifecycle.fail(scan.id, "WORKFLOW_ERROR", "what the workflow's error callback records")

    def settled() -> bool:  # the batches under way finish and write; the queued ones end at once
        before = ScanResult.objects.filter(scan=scan).count()
        time.sleep(1.0)
        return ScanResult.objects.filter(scan=scan).count() == before

    wait_until(settled, 60, "the batches under way to finish")
    _, skips = accounted(scan)
    unscanned = [detail for _, reason, detail in skips if "WORKFLOW_ERROR" in detail]
    assert len(unscanned) >= scan.total_symbols - written - 4 * scan.batch_size  # but the batches under way
    assert {reason for _, reason, detail in skips if "WORKFLOW_ERROR" in detail} == {"error"}
    assert scan.status == "failed" and scan.progress["status"] == "failed"
    assert scan.progress["stages"]["symbol_scanning"]["status"] == "failed"
    assert scan.progress["stages"]["symbol_scanning"]["current"] <= scan.total_symbols


def test_a_result_written_after_the_failure_skipped_its_symbol_is_ignored(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "scan_start", lambda scan: None)
    scan = scan_create(owner=None, config=ScanConfig(max_symbols=20))
    first, late = (row[0] for row in scan.universe[:2])
    row = {"symbol": first, "sector": "Energy", "tech_rating": 50.0, "signal": "hold"}
    lifecycle.record_outcomes(scan.id, [row], [])  # written before the failure: it stands
    assert lifecycle.fail(scan.id, "WORKFLOW_ERROR", "boom")
    lifecycle.record_outcomes(scan.id, [{**row, "symbol": late}], [])  # a batch that ran on
    results, skips = accounted(scan)
    assert results == [first] and (late, "error") in {(s, r) for s, r, _ in skips}


@pytest.fixture
def vanishing_market(market_dir: Path, tmp_path: Path) -> DataSource:
    """Forty real symbols in a bars file of their own, which the test may delete."""
    with (market_dir / "constituents.csv").open(newline="") as fh:
        universe = sorted(csv.DictReader(fh), key=lambda r: r["symbol"])[::12][:40]
    table = pq.read_table(market_dir / "prices.parquet")
    wanted = pa.array([r["symbol"] for r in universe])
    pq.write_table(table.filter(pc.is_in(table.column("symbol"), value_set=wanted)), tmp_path / "prices.parquet")
    with (tmp_path / "universe.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["symbol", "name", "sector"])
        writer.writerows([r["symbol"], r["name"], r["sector"]] for r in universe)
    return DataSource("parquet", str(tmp_path / "prices.parquet"), str(tmp_path / "universe.csv"))


def test_a_scan_whose_data_vanished_before_universe_loading_skips_every_symbol_with_the_reason(
    workers: Workers, vanishing_market: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = services.scan_start
    monkeypatch.setattr(services, "scan_start", lambda scan: None)
    scan = scan_create(owner=None, config=ScanConfig(), source=vanishing_market, batch_size=10)
    Path(vanishing_market.data_path).unlink()
    start(scan)
    scan = wait_finished(scan.id, timeout=60)
    assert (scan.status, scan.error_code) == ("failed", "DATA_SOURCE_ERROR")
    results, skips = accounted(scan)
    assert results == [] and len(skips) == 40
    assert all(reason == "error" and "DATA_SOURCE_ERROR" in detail for _, reason, detail in skips)


# --- Redelivered batches ---------------------------------------------------------------------


def test_batches_run_twice_are_counted_once_in_the_progress(workers: Workers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "scan_start", lambda scan: None)
    scan = scan_create(owner=None, config=ScanConfig(max_symbols=200), batch_size=100)
    sid = str(scan.id)
    tasks.load_universe.delay(sid).get(timeout=30)
    for _ in range(2):
        tasks.fetch_batch.delay(sid, 0, 2).get(timeout=30)
    tasks.fetch_batch.delay(sid, 1, 2).get(timeout=30)
    scan.refresh_from_db()
    first = len(batch_instruments(scan, 0, 2))
    snap = store.snapshot(scan.id)
    assert snap is not None and snap["stages"]["data_fetching"]["current"] == 200
    assert snap["cache"]["hits"] + snap["cache"]["misses"] == 200
    lifecycle.stage_handover(sid, "data_fetching", "symbol_scanning", 200)
    for _ in range(2):
        tasks.scan_batch.delay(sid, 0, 2).get(timeout=30)
    assert scanned(scan) == first
    tasks.scan_batch.delay(sid, 1, 2).get(timeout=30)
    assert scanned(scan) == 200
    assert tasks.finalize_scan.delay(sid).get(timeout=30) == "completed"
    scan.refresh_from_db()
    assert scan.progress["stages"]["symbol_scanning"]["current"] == 200
    accounted(scan)


# --- Redis flushed under a running scan ------------------------------------------------------

FLUSH_SYMBOLS = 1000


@pytest.fixture
def own_redis(tmp_path: Path, settings: Any) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it flushes; this process's progress reads go
    to it (its Celery app stays on the suite's server)."""
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    settings.REDIS_URL = server.url
    yield server
    server.stop()


@pytest.fixture
def own_workers(own_redis: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(own_env(own_redis), tmp_path / "worker.log", name="flushed")
    pool.start()
    yield pool
    pool.stop()


def own_env(server: RedisServer, **extra: str) -> dict[str, str]:
    return scan_env(server.url, FLUSH_SYMBOLS, **extra)


def start_on(server: RedisServer, batch_size: int) -> Scan:
    """Create and enqueue a scan from a process pointed at ``server``."""
    return Scan.objects.get(id=start_scan_from(own_env(server), batch_size))


def test_progress_flushed_from_redis_mid_scan_is_rebuilt_and_the_final_snapshot_agrees_with_the_database(
    own_redis: RedisServer, own_workers: Workers, settings: Any
) -> None:
    scan = start_on(own_redis, batch_size=FLUSH_SYMBOLS // 3 + 1)  # one batch per worker process, one queued

    def both_batches_mid_flight() -> bool:
        # Counters move chunk by chunk inside a batch; rows are written when a batch ends.
        return scanned(scan) > 0 and not ScanResult.objects.filter(scan=scan).exists()

    wait_until(both_batches_mid_flight, 60, "both batches to be under way")
    own_redis.client().flushall()
    wait_until(lambda: store.snapshot(scan.id) is not None, 30, "a batch under way to report again")
    snap = store.snapshot(scan.id)
    assert snap is not None
    assert (snap["status"], snap["current_stage"]) == ("running", "symbol_scanning")
    assert stage_statuses(snap) == ["completed", "completed", "running", "pending"]
    scan.refresh_from_db()
    timings = scan.stage_timings()
    for stage in ("universe_loading", "data_fetching"):
        assert snap["stages"][stage]["seconds"] == pytest.approx(timings[stage]["seconds"], abs=0.002)
    assert 0 < snap["current"] <= snap["total"] == scan.total_symbols

    # The flush took the queued batch and the chord's state too: the scan stalls, and the
    # watchdog fails it once its batches under way have ended.
    stall = timedelta(seconds=3.5)

    def stalled() -> bool:
        heartbeat = Scan.objects.get(id=scan.id).heartbeat_at
        return heartbeat is not None and heartbeat < timezone.now() - stall

    wait_until(stalled, 60, "the scan to stall")
    settings.TECHNIC_SCAN_STALL_SECONDS = 3
    assert tasks.watchdog() == 1
    results, skips = accounted(scan)
    assert scan.status == scan.progress["status"] == "failed"
    final = scan.progress
    same_snapshot(final, store.snapshot(scan.id))
    assert stage_statuses(final) == ["completed", "completed", "failed", "pending"]
    by_batches = len(results) + sum("SCAN_STALLED" not in detail for _, _, detail in skips)
    assert by_batches <= final["stages"]["symbol_scanning"]["current"] <= scan.total_symbols
    assert scan.finished_at is not None and scan.started_at is not None
    assert final["elapsed_seconds"] == pytest.approx((scan.finished_at - scan.started_at).total_seconds(), abs=0.002)
