"""The distributed workflow with a real redis-server and real Celery worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import override_settings

from engine.config import ScanConfig
from engine.universe import select_universe
from market.sources import DataSource, provider_for
from progress import store
from progress.tracker import ProgressTracker
from scanner import services, tasks
from scanner.lifecycle import batch_instruments
from scanner.models import Scan, ScanResult, ScanSkip
from scanner.runner import run_scan
from scanner.selectors import scan_report
from scanner.services import scan_cancel, scan_create
from tests.support.processes import REPO, RedisServer, Workers, database_url
from tests.support.waits import wait_finished, wait_until
from tests.support.worker_app import CRASH_KEY, app

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def outcomes(scan: Scan) -> tuple[list[str], list[tuple[str, str]]]:
    results = list(ScanResult.objects.filter(scan=scan).values_list("symbol", flat=True))
    skips = list(ScanSkip.objects.filter(scan=scan).values_list("symbol", "reason"))
    return results, skips


def assert_each_symbol_once(scan: Scan) -> tuple[list[str], list[tuple[str, str]]]:
    results, skips = outcomes(scan)
    names = results + [s for s, _ in skips]
    assert len(names) == len(set(names)), "a symbol has more than one outcome"
    assert sorted(names) == sorted(symbol for symbol, _, _ in scan.universe)
    return results, skips


def done_in(scan: Scan, stage: str) -> int:
    """Units of ``stage`` the workers reported done (the progress store's counter)."""
    snap = store.snapshot(scan.id)
    return 0 if snap is None else int(snap["stages"][stage]["current"])


def scanned(scan: Scan) -> int:
    return done_in(scan, "symbol_scanning")


def test_a_distributed_scan_of_the_real_505_symbols_gives_the_same_rows_as_the_in_process_engine(
    workers: Workers, market_dir: Path
) -> None:
    source = DataSource("parquet", str(market_dir / "prices.parquet"), str(market_dir / "constituents.csv"))
    config = ScanConfig()
    scan = wait_finished(scan_create(owner=None, config=config, source=source, batch_size=50).id)
    assert scan.status == "completed", scan.error_message
    assert scan.n_batches == 11
    distributed = scan_report(scan)
    local = run_scan(config, provider_for(source), ProgressTracker("local"))
    assert len(distributed.rows) == 499
    assert distributed.rows == local.rows
    assert distributed.skipped == local.skipped
    timings = scan.stage_timings()
    assert all(timings[stage]["seconds"] is not None for stage in timings)
    assert scan.metrics["results"] == 499 and scan.metrics["requested_symbols"] == 505


def test_killing_a_worker_process_mid_scan_loses_no_symbol_and_duplicates_none(workers: Workers) -> None:
    scan = scan_create(owner=None, config=ScanConfig(), batch_size=1000)  # two batches, one per worker process

    def both_batches_mid_flight() -> bool:
        # Counters move chunk by chunk inside a batch; rows are written when a batch ends.
        return scanned(scan) > 0 and not ScanResult.objects.filter(scan=scan).exists()

    wait_until(both_batches_mid_flight, 60, "both batches to be under way")
    os.kill(workers.children()[0], signal.SIGKILL)
    scan = wait_finished(scan.id, timeout=120)
    assert scan.status == "completed", scan.error_message
    _, skips = assert_each_symbol_once(scan)
    assert "error" not in {reason for _, reason in skips}
    attempts = list(_attempt_keys(scan).values())
    assert max(attempts) >= 2, "the killed batch was never delivered again"
    # The killed batch had reported part of its symbols; delivered again, it is counted once.
    counted = store.current_snapshot(scan)["stages"]["symbol_scanning"]
    assert (counted["current"], counted["progress"]) == (scan.total_symbols, 100)


def _attempt_keys(scan: Scan) -> dict[str, int]:
    from infra.redis_client import main_redis

    client = main_redis()
    return {str(k): int(client.get(k) or 0) for k in client.scan_iter(f"technic:scan:{scan.id}:batch:*:attempts")}


def test_a_batch_delivered_twice_writes_its_rows_once_and_finalization_applies_once(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "scan_start", lambda scan: None)
    scan = scan_create(owner=None, config=ScanConfig(max_symbols=200), batch_size=100)
    sid = str(scan.id)
    tasks.load_universe.delay(sid).get(timeout=30)
    for i in range(2):
        tasks.fetch_batch.delay(sid, i, 2).get(timeout=30)
    twice = [tasks.scan_batch.delay(sid, 0, 2), tasks.scan_batch.delay(sid, 0, 2)]
    assert [r.get(timeout=30)["state"] for r in twice] == ["done", "done"]
    scan.refresh_from_db()
    first_batch = [i.symbol for i in batch_instruments(scan, 0, 2)]
    results, skips = outcomes(scan)
    assert sorted(results + [s for s, _ in skips]) == sorted(first_batch)
    tasks.scan_batch.delay(sid, 1, 2).get(timeout=30)
    assert tasks.finalize_scan.delay(sid).get(timeout=30) == "completed"
    scan.refresh_from_db()
    finished_at, metrics = scan.finished_at, scan.metrics
    assert tasks.finalize_scan.delay(sid).get(timeout=30) == "completed"
    scan.refresh_from_db()
    assert (scan.finished_at, scan.metrics) == (finished_at, metrics)
    assert_each_symbol_once(scan)


def test_cancelling_during_data_fetching_stops_at_once_and_skips_everything_as_cancelled(workers: Workers) -> None:
    scan = scan_create(owner=None, config=ScanConfig(), batch_size=100)
    wait_until(lambda: 0 < done_in(scan, "data_fetching") < scan.total_symbols, 60, "data fetching")
    scan_cancel(scan)
    cancelled_at = time.monotonic()
    scan = wait_finished(scan.id, timeout=20)
    assert scan.status == "cancelled"
    assert time.monotonic() - cancelled_at < 3
    results, skips = assert_each_symbol_once(scan)
    assert results == [] and {reason for _, reason in skips} == {"cancelled"}
    assert scanned(scan) == 0, "a batch ran after the cancel"


def test_cancelling_during_symbol_scanning_keeps_partial_results_and_no_batch_keeps_running(workers: Workers) -> None:
    scan = scan_create(owner=None, config=ScanConfig(), batch_size=50)
    wait_until(lambda: 0 < scanned(scan) < scan.total_symbols // 2, 60, "scanning to be under way")
    scan_cancel(scan)
    cancelled_at = time.monotonic()
    scan = wait_finished(scan.id, timeout=20)
    assert scan.status == "cancelled"
    assert time.monotonic() - cancelled_at < 3
    results, skips = assert_each_symbol_once(scan)
    assert results, "partial results were not kept"
    assert sum(reason == "cancelled" for _, reason in skips) > scan.total_symbols // 4
    counts = (scanned(scan), ScanResult.objects.filter(scan=scan).count())
    time.sleep(1.0)
    assert (scanned(scan), ScanResult.objects.filter(scan=scan).count()) == counts
    assert scan_cancel(scan).status == "cancelled"  # cancelling twice is harmless


def test_cancelling_a_finished_scan_is_refused(workers: Workers) -> None:
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=30)).id)
    assert scan.status == "completed"
    with pytest.raises(services.ScanNotCancellable):
        scan_cancel(scan)


def test_worker_processes_keep_their_database_connection_from_task_to_task(workers: Workers) -> None:
    """Celery's Django fixup would connect afresh for every task; the workers keep a connection
    up to CONN_MAX_AGE instead (60 s: an expiry may fall inside this test, once per process)."""

    def opened() -> dict[int, int]:
        answers = [app.send_task("tests.connections_opened").get(timeout=30) for _ in range(12)]
        return {pid: max(n for p, n in answers if p == pid) for pid, _ in answers}

    before = opened()
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=40), batch_size=1).id, timeout=120)
    assert scan.status == "completed" and scan.n_batches == 40  # over 80 tasks
    after = opened()
    assert set(before) & set(after), "the probes never reached the same process twice"
    for pid in set(before) & set(after):
        assert after[pid] - before[pid] <= 1, f"process {pid} opened {after[pid] - before[pid]} connections"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a PostgreSQL server (the PostgreSQL pass)")
def test_a_scan_completes_after_the_database_server_dropped_the_workers_connections(workers: Workers) -> None:
    assert wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=30)).id).status == "completed"
    with connection.cursor() as cursor:  # every other session of this database: the workers'
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    scan = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=60), batch_size=20).id, timeout=60)
    assert scan.status == "completed"
    assert_each_symbol_once(scan)


def test_a_batch_that_always_kills_its_worker_ends_with_its_symbols_skipped_as_error(
    workers: Workers, redis_server: RedisServer
) -> None:
    config = ScanConfig(max_symbols=300)
    victim = select_universe(provider_for(DataSource.from_settings()).instruments(), config)[0].symbol
    redis_server.client().sadd(CRASH_KEY, victim)
    try:
        scan = wait_finished(scan_create(owner=None, config=config, batch_size=100).id, timeout=120)
    finally:
        redis_server.client().delete(CRASH_KEY)
    assert scan.status == "completed", scan.error_message
    results, skips = assert_each_symbol_once(scan)
    errored = {symbol for symbol, reason in skips if reason == "error"}
    assert errored == {i.symbol for i in batch_instruments(scan, 0, scan.n_batches)}
    assert victim in errored and len(results) > 150


def test_the_watchdog_fails_a_scan_whose_chord_state_was_lost(workers: Workers, redis_server: RedisServer) -> None:
    scan = scan_create(owner=None, config=ScanConfig(), batch_size=20)
    wait_until(lambda: scanned(scan) > 0, 60, "scanning to start")
    client = redis_server.client()

    def lose_chord_state() -> bool:  # again at every poll, so no part of it can survive
        for key in client.scan_iter("celery-taskset-meta-*"):
            client.delete(key)
        return scanned(scan) >= scan.total_symbols

    wait_until(lose_chord_state, 60, "every batch to run while the chord's state is lost")
    time.sleep(4)
    assert Scan.objects.get(id=scan.id).status == "running"
    # Here, not on the workers: their stall limit must exceed the visibility timeout.
    with override_settings(TECHNIC_SCAN_STALL_SECONDS=3):
        assert tasks.watchdog.apply().get() >= 1
    scan.refresh_from_db()
    assert scan.status == "failed"
    assert scan.error_code == "SCAN_STALLED"
    assert "no progress" in scan.error_message


def test_a_small_scan_finishes_while_a_large_one_started_earlier_is_still_running(workers: Workers) -> None:
    large = scan_create(owner=None, config=ScanConfig(), batch_size=20)
    wait_until(lambda: scanned(large) > 0, 60, "the large scan to start scanning")
    small = wait_finished(scan_create(owner=None, config=ScanConfig(max_symbols=50), batch_size=20).id, timeout=60)
    assert small.status == "completed"
    large.refresh_from_db()
    assert large.status == "running", "the small scan waited for the whole large scan"
    assert scanned(large) < large.total_symbols
    assert wait_finished(large.id, timeout=120).status == "completed"


def test_a_worker_refuses_to_start_when_a_time_limit_reaches_the_visibility_timeout(redis_server: RedisServer) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url, "CELERY_TASK_TIME_LIMIT": "4000"}
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "technic_project", "worker", "--concurrency", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "CELERY_TASK_TIME_LIMIT=4000 must be below the broker visibility timeout" in proc.stderr


def test_the_scan_command_runs_through_the_workers_and_prints_their_results(
    workers: Workers, redis_server: RedisServer, tmp_path: Path
) -> None:
    from django.db import connection

    out = tmp_path / "scan.json"
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url(connection.settings_dict),
        "TECHNIC_DEMO_SYMBOLS": str(workers.env["TECHNIC_DEMO_SYMBOLS"]),
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "scan", "--via-celery", "--max-symbols", "120", "--format", "json",
         "--output", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "on the Celery workers" in proc.stderr and "symbol_scanning" in proc.stderr
    doc = json.loads(out.read_text())
    scan = Scan.objects.get(id=doc["scan"]["id"])
    assert doc["scan"]["status"] == scan.status == "completed"
    assert len(doc["results"]) + len(doc["skipped"]) == 120
    assert [r["symbol"] for r in doc["results"]] == [r.symbol for r in scan.results.order_by("-tech_rating", "symbol")]


def test_the_scan_command_says_so_when_no_worker_listens(redis_server: RedisServer) -> None:
    # Database 5 of the tests' redis-server: the workers listen on database 0.
    env = {**os.environ, "REDIS_URL": redis_server.url.replace("/0", "/5")}
    proc = subprocess.run(
        [sys.executable, "manage.py", "scan", "--via-celery", "--max-symbols", "20"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no Celery worker answered" in proc.stderr.splitlines()[-1]


def test_the_scan_command_says_so_when_the_broker_is_unreachable() -> None:
    from tests.support.processes import free_port

    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "scan", "--via-celery", "--max-symbols", "20"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "cannot reach the broker" in proc.stderr.splitlines()[-1]


def test_a_scan_deleted_while_it_fetched_ends_its_workflow_at_the_handover() -> None:
    """``gather_fetches`` of a scan that no longer exists sends nothing further and fails nothing."""
    assert tasks.gather_fetches.run([], "00000000-0000-4000-8000-000000000000", 2) is None
