"""Scans through the faults of a bad night: Redis restarted under a running scan, a whole worker
SIGKILLed. A redis-server of this module's own, with an append-only file as production runs it
(docs/operations.md), and workers of each test's own, so restarting or killing them disturbs
no other test. Scans are started from a process pointed at that server (this process's Celery
app and Redis clients point at the suite's shared one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test.utils import override_settings

from progress import store
from scanner.models import TERMINAL_STATUSES, Scan, ScanResult, ScanSkip
from tests.support.processes import REPO, SHORT_TIMEOUTS, Beat, RedisServer, Workers, scan_env, start_scan_from
from tests.support.waits import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEMO_SYMBOLS = 3000
BATCH_SIZE = 10  # 300 batches per stage: every stage spans the fault


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("aof-redis"), appendonly=True)
    server.start()
    yield server
    server.stop()


def fault_env(server: RedisServer, **extra: str) -> dict[str, str]:
    return scan_env(server.url, DEMO_SYMBOLS, **extra)


def start_scan(server: RedisServer) -> str:
    """Create and enqueue a scan of every demo symbol on ``server``; returns its id."""
    return start_scan_from(fault_env(server), BATCH_SIZE)


def done_in(server: RedisServer, scan_id: str, stage: str) -> int:
    with override_settings(REDIS_URL=server.url):
        snap = store.snapshot(scan_id)
    return 0 if snap is None else int(snap["stages"][stage]["current"])


def finished(scan_id: str, timeout: float) -> Scan:
    wait_until(
        lambda: Scan.objects.get(id=scan_id).status in TERMINAL_STATUSES, timeout, f"scan {scan_id} to end", poll=0.2
    )
    return Scan.objects.get(id=scan_id)


def assert_completed_with_each_symbol_once(scan: Scan) -> None:
    assert scan.status == "completed", f"{scan.status} {scan.error_code}: {scan.error_message}"
    results = list(ScanResult.objects.filter(scan=scan).values_list("symbol", flat=True))
    skips = list(ScanSkip.objects.filter(scan=scan).values_list("symbol", "reason"))
    names = results + [symbol for symbol, _ in skips]
    assert len(names) == len(set(names)), "a symbol has more than one outcome"
    assert sorted(names) == sorted(symbol for symbol, _, _ in scan.universe)
    assert len(names) == scan.total_symbols == DEMO_SYMBOLS
    assert "error" not in {reason for _, reason in skips}, "a batch was given up"


# For the restarts: time limits above the longest outage tested (a task waiting for Redis must
# not be killed by its limit), in the defaults' relation, and a watchdog that resumes a scan
# after 48 s without progress (time limit + a 3 s sweep) instead of the defaults' 1,020 s.
RESTART_TIMEOUTS = {
    "CELERY_VISIBILITY_TIMEOUT": "60",
    "CELERY_TASK_SOFT_TIME_LIMIT": "40",
    "CELERY_TASK_TIME_LIMIT": "45",
    "TECHNIC_SCAN_STALL_SECONDS": "120",
    "TECHNIC_WATCHDOG_INTERVAL": "1",
}


@pytest.mark.parametrize(
    ("stage", "downtime"),
    [("data_fetching", 6), ("symbol_scanning", 6), ("symbol_scanning", 25)],
)
def test_a_scan_rides_out_a_redis_restart(aof_redis: RedisServer, tmp_path: Path, stage: str, downtime: float) -> None:
    """Most restarts are ridden out by the tasks themselves. Now and then (one run in about ten)
    a chord's count in the result backend is lost with the connection, and the stage never hands
    over: the watchdog then resumes the scan (docs/workflow.md "Faults"), which this test allows
    for; it must still complete with every symbol accounted for once."""
    env = fault_env(aof_redis, **RESTART_TIMEOUTS)
    workers, beat = Workers(env, tmp_path / "worker.log"), Beat(env, tmp_path)
    workers.start()
    beat.start()
    try:
        scan_id = start_scan(aof_redis)
        wait_until(lambda: done_in(aof_redis, scan_id, stage) > DEMO_SYMBOLS // 10, 90, f"{stage} to be under way")
        aof_redis.restart(downtime)
        scan = finished(scan_id, timeout=150 + downtime)
    finally:
        workers.stop()
        beat.stop()
    assert_completed_with_each_symbol_once(scan)


def test_a_scan_whose_whole_worker_was_killed_completes_on_a_new_worker(aof_redis: RedisServer, tmp_path: Path) -> None:
    env = fault_env(aof_redis, **SHORT_TIMEOUTS)
    first, second = Workers(env, tmp_path / "w1.log", name="w1"), Workers(env, tmp_path / "w2.log", name="w2")
    beat = Beat(env, tmp_path)
    first.start()
    beat.start()
    try:
        scan_id = start_scan(aof_redis)
        wait_until(lambda: done_in(aof_redis, scan_id, "symbol_scanning") > DEMO_SYMBOLS // 10, 90, "scanning")
        first.kill()
        assert aof_redis.client().hlen("unacked") > 0, "the killed worker held no batch"
        second.start()
        scan = finished(scan_id, timeout=120)
    finally:
        for process in (first, second, beat):
            if process.process is not None:
                process.stop()
    assert_completed_with_each_symbol_once(scan)


def test_a_scan_whose_queued_work_redis_lost_is_resumed_by_the_watchdog_and_completes(
    aof_redis: RedisServer, tmp_path: Path
) -> None:
    env = fault_env(aof_redis, **SHORT_TIMEOUTS)
    workers, beat = Workers(env, tmp_path / "worker.log"), Beat(env, tmp_path)
    workers.start()
    beat.start()
    try:
        scan_id = start_scan(aof_redis)
        wait_until(lambda: done_in(aof_redis, scan_id, "symbol_scanning") > DEMO_SYMBOLS // 10, 90, "scanning")
        aof_redis.client().flushall()  # the queue, the chord's counter, progress: all gone
        scan = finished(scan_id, timeout=120)
    finally:
        workers.stop()
        beat.stop()
    assert_completed_with_each_symbol_once(scan)
    assert "resumed at symbol_scanning" in workers.log.read_text()


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        (
            {"TECHNIC_SCAN_STALL_SECONDS": "600"},
            "TECHNIC_SCAN_STALL_SECONDS=600 must be above CELERY_VISIBILITY_TIMEOUT",
        ),
        (
            {"CELERY_VISIBILITY_TIMEOUT": "3600", "TECHNIC_SCAN_STALL_SECONDS": "3700"},
            "TECHNIC_SCAN_STALL_SECONDS=3700 must be above CELERY_VISIBILITY_TIMEOUT=3600 plus two",
        ),
        ({"CELERY_TASK_TIME_LIMIT": "1200"}, "CELERY_TASK_TIME_LIMIT=1200 must be below the broker visibility timeout"),
    ],
)
def test_a_worker_refuses_to_start_when_its_timeouts_contradict_each_other(
    aof_redis: RedisServer, env: dict[str, str], complaint: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "technic_project", "worker", "--concurrency", "1"],
        cwd=REPO,
        env={**os.environ, "REDIS_URL": aof_redis.url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert complaint in proc.stderr
