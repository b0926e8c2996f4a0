"""The fault table: what a scan of 5,000 demo symbols comes to when something breaks under it.

Sets up its own redis-server (with an append-only file, as production runs the main instance),
a SQLite database, one worker with two processes and beat (the watchdog every second), with
shorter timeouts in the relation the defaults keep: visibility timeout 30 s, task time limits
25/28 s, redelivery sweep 1 s, stall limit 40 s, so a scan without progress is resumed after 29 s
(time limit + sweep). With the defaults the same recoveries take up to about 20 minutes
(docs/operations.md). A first, unreported scan fills the price cache, so every row but those
after ``flushall`` finds the bars cached.

One scan per row, batch size 25 (200 batches per stage, so the fault lands mid-stage):

* ``none``: no fault, for reference;
* ``kill_child``: SIGKILL one pool process while symbols are scanned;
* ``kill_worker``: SIGKILL the whole worker (main process and pool), then start another;
* ``restart_redis_<n>s``: stop Redis for n seconds while symbols are scanned, start it again
  on the same port;
* ``flushall``: FLUSHALL while symbols are scanned (queue, chord counters, progress, cache gone);
* ``cancel_<stage>``: cancel while the scan is in that stage (in ``symbol_scanning`` once a
  fifth of the symbols have results).

Each row: terminal status (and error code), seconds from creation to the finish stamp, results
and skips against the requested symbols, duplicates (symbols with more than one outcome: two
rows of one kind, which the unique constraints forbid, or a result and a skip), and whether the
watchdog resumed the scan. Last line of output: the JSON object, also in bench/results/faults.json.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import django_with_own_redis, report

SYMBOLS = 5000
BATCH_SIZE = 25
RESTARTS = (6, 20)  # seconds Redis is down
FINISH_TIMEOUT = 150
TIMEOUTS = {
    "CELERY_VISIBILITY_TIMEOUT": "30",
    "CELERY_TASK_SOFT_TIME_LIMIT": "25",
    "CELERY_TASK_TIME_LIMIT": "28",
    "TECHNIC_SCAN_STALL_SECONDS": "40",
    "TECHNIC_WATCHDOG_INTERVAL": "1",
}
STAGES = ("universe_loading", "data_fetching", "symbol_scanning", "finalization")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="technic-faults-"))
    os.environ.update(TIMEOUTS)
    redis_server = django_with_own_redis(work, SYMBOLS, appendonly=True)
    from tests.support.processes import Beat, Workers

    env = {"REDIS_URL": redis_server.url, "DATABASE_URL": os.environ["DATABASE_URL"]}
    started: list[Any] = []

    def new_worker() -> Any:
        worker = Workers(env, work / f"worker{len(started)}.log", name=f"w{len(started)}", app="technic_project")
        worker.start()
        started.append(worker)
        return worker

    beat = Beat(env, work, app="technic_project")
    table = _Table(redis_server, new_worker(), new_worker, work)
    try:
        beat.start()
        table.warm_up()
        rows = [table.run(fault) for fault in table.faults()]
    finally:
        for process in [*started, beat]:
            if process.process is not None:
                process.stop()
        redis_server.stop()
    report(
        "faults",
        {
            "demo_symbols": SYMBOLS,
            "batch_size": BATCH_SIZE,
            "timeouts": TIMEOUTS,
            "rows": rows,
        },
    )


class _Table:
    def __init__(self, redis_server: Any, worker: Any, new_worker: Callable[[], Any], work: Path) -> None:
        self.redis = redis_server
        self.worker = worker
        self.new_worker = new_worker
        self.work = work

    def faults(self) -> list[str]:
        restarts = [f"restart_redis_{seconds}s" for seconds in RESTARTS]
        return ["none", "kill_child", "kill_worker", *restarts, "flushall", *(f"cancel_{s}" for s in STAGES)]

    def warm_up(self) -> None:
        _outcome(self.start(), self.work)

    def start(self) -> Any:
        from engine.config import ScanConfig
        from scanner.services import scan_create

        return scan_create(owner=None, config=ScanConfig(), batch_size=BATCH_SIZE).id

    def run(self, fault: str) -> dict[str, Any]:
        scan_id = self.start()
        note = self.inflict(fault, scan_id)
        row = {"fault": fault, **_outcome(scan_id, self.work), "note": note}
        print(_line(row), flush=True)
        return row

    def inflict(self, fault: str, scan_id: Any) -> str:
        if fault == "none":
            return ""
        if fault.startswith("cancel_"):
            return _cancel_in(scan_id, fault.removeprefix("cancel_"))
        _wait(lambda: _results(scan_id) >= SYMBOLS // 5, 120, poll=0.02)
        if fault == "kill_child":
            os.kill(self.worker.children()[0], signal.SIGKILL)
        elif fault == "kill_worker":
            self.worker.kill()
            self.worker = self.new_worker()
        elif fault.startswith("restart_redis_"):
            self.redis.restart(float(fault.removeprefix("restart_redis_").removesuffix("s")))
        elif fault == "flushall":
            self.redis.client().flushall()
        return f"at {_results(scan_id)} results"


def _cancel_in(scan_id: Any, stage: str) -> str:
    """Cancel the scan as soon as the database shows it in ``stage``; says where it was."""
    from scanner.models import TERMINAL_STATUSES, Scan
    from scanner.services import ScanNotCancellable, scan_cancel

    def there() -> bool:
        scan = Scan.objects.only("status", "current_stage").get(id=scan_id)
        if scan.status in TERMINAL_STATUSES:
            return True
        if stage == "symbol_scanning" and _results(scan_id) < SYMBOLS // 5:
            return False
        return scan.status == "running" and scan.current_stage == stage

    _wait(there, 120, poll=0.002)
    scan = Scan.objects.get(id=scan_id)
    where = f"cancel requested in {scan.current_stage or scan.status}"
    try:
        scan_cancel(scan)
    except ScanNotCancellable as err:
        return f"{where}: refused ({err})"
    return where


def _outcome(scan_id: Any, work: Path) -> dict[str, Any]:
    from scanner.models import TERMINAL_STATUSES, Scan, ScanResult, ScanSkip

    deadline = time.monotonic() + FINISH_TIMEOUT
    while (status := Scan.objects.values_list("status", flat=True).get(id=scan_id)) not in TERMINAL_STATUSES:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    scan = Scan.objects.get(id=scan_id)
    results = list(ScanResult.objects.filter(scan=scan).values_list("symbol", flat=True))
    skips = list(ScanSkip.objects.filter(scan=scan).values_list("symbol", "reason"))
    skipped = [symbol for symbol, _ in skips]
    by_reason: dict[str, int] = {}
    for _, reason in skips:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    resumed = any(
        f"{scan_id}: no progress since" in log.read_text(errors="replace") for log in work.glob("worker*.log")
    )
    return {
        "status": status if status in TERMINAL_STATUSES else f"{status} (not finished after {FINISH_TIMEOUT} s)",
        "error_code": scan.error_code,
        "seconds": round((scan.finished_at - scan.created_at).total_seconds(), 2) if scan.finished_at else None,
        "requested": scan.total_symbols,
        "results": len(results),
        "skips": len(skipped),
        "accounted": len(results) + len(skipped) == scan.total_symbols,
        "duplicates": len(results) + len(skipped) - len(set(results) | set(skipped)),
        "skips_by_reason": by_reason,
        "resumed_by_watchdog": resumed,
    }


def _results(scan_id: Any) -> int:
    from scanner.models import ScanResult

    return int(ScanResult.objects.filter(scan_id=scan_id).count())


def _wait(predicate: Callable[[], bool], timeout: float, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.faults: timed out after {timeout} s")
        time.sleep(poll)


def _line(row: dict[str, Any]) -> str:
    seconds = "-" if row["seconds"] is None else f"{row['seconds']:.1f} s"
    counts = f"{row['results']} + {row['skips']} of {row['requested']}"
    flags = ("" if row["accounted"] else " NOT ACCOUNTED") + (" resumed" if row["resumed_by_watchdog"] else "")
    code = f" {row['error_code']}" if row["error_code"] else ""
    return (
        f"{row['fault']:<26} {row['status'] + code:<24} {seconds:>8}  {counts:<22} dup {row['duplicates']}"
        f"{flags}  {row['note']}"
    )


if __name__ == "__main__":
    main()
