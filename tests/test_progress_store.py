"""The progress store against a real redis-server: atomic updates, monotonic seq and progress,
counters that count a redelivered batch once, cancelled stages, the push throttle, TTLs, the ETA
ledger, the database fallback and the rebuild of progress Redis lost."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from progress import push, store
from scanner.models import Scan, ScanSkip
from tests.support.processes import RedisServer


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> list[dict[str, Any]]:
    """Snapshots the store pushed, in order (the channel layer itself is tested elsewhere)."""
    sent: list[dict[str, Any]] = []

    def record(group: str, message: dict[str, Any]) -> bool:
        sent.append(json.loads(message["message"]["text"]))
        return True

    monkeypatch.setattr(push, "group_send", record)
    return sent


def new_id() -> str:
    return f"store-test-{time.monotonic_ns()}"


def test_every_update_gets_the_next_seq_and_progress_never_goes_back(pushes: list[dict[str, Any]]) -> None:
    sid = new_id()
    snaps = [
        store.stage_started(sid, "universe_loading", 1),
        store.handover(sid, "universe_loading", "data_fetching", 10),
    ]
    snaps += [store.advanced(sid, "data_fetching", 1) for _ in range(10)]
    snaps.append(store.handover(sid, "data_fetching", "symbol_scanning", 10))
    seqs = [s["seq"] for s in snaps if s]
    assert seqs == list(range(1, len(snaps) + 1))
    overall = [s["overall_progress"] for s in snaps if s]
    assert overall == sorted(overall)
    assert overall[-1] == pytest.approx(25.0)


def test_concurrent_writers_lose_no_unit_and_share_no_seq(pushes: list[dict[str, Any]]) -> None:
    sid = new_id()
    store.stage_started(sid, "symbol_scanning", 400)
    seen: list[int] = []

    def writer() -> None:
        for _ in range(100):
            snap = store.advanced(sid, "symbol_scanning", 1, "AAPL")
            assert snap is not None
            seen.append(snap["seq"])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.snapshot(sid)
    assert final is not None
    assert final["stages"]["symbol_scanning"]["current"] == 400
    assert len(set(seen)) == 400 and final["seq"] == 401


def test_the_current_stage_never_moves_back_and_messages_count_symbols(pushes: list[dict[str, Any]]) -> None:
    sid = new_id()
    store.stage_started(sid, "symbol_scanning", 505)
    store.advanced(sid, "symbol_scanning", 227, "AAPL")
    snap = store.stage_started(sid, "data_fetching", 505)  # a late, redelivered start
    assert snap is not None
    assert snap["current_stage"] == "symbol_scanning"
    assert snap["message"] == "Scanning AAPL (227/505)"


def test_nothing_changes_once_the_scan_has_ended(pushes: list[dict[str, Any]]) -> None:
    sid = new_id()
    store.stage_started(sid, "symbol_scanning", 10)
    final = store.finished(sid, "cancelled", "cancelled")
    assert final is not None and final["status"] == "cancelled" and final["results_url"] == f"/scan/results/{sid}"
    assert final["stages"]["symbol_scanning"]["status"] == "cancelled"
    assert store.advanced(sid, "symbol_scanning", 5) is None
    assert store.finished(sid, "completed", "again") is None
    after = store.snapshot(sid)
    assert after is not None and after["seq"] == final["seq"] and after["status"] == "cancelled"


def test_counter_updates_are_pushed_at_most_every_100_ms_but_changes_of_stage_always(
    pushes: list[dict[str, Any]],
) -> None:
    sid = new_id()
    store.stage_started(sid, "symbol_scanning", 1000)
    started = time.monotonic()
    for _ in range(200):
        store.advanced(sid, "symbol_scanning", 1)
    elapsed = time.monotonic() - started
    store.handover(sid, "symbol_scanning", "finalization", 1)
    counter_pushes = [
        p
        for p in pushes
        if p["current_stage"] == "symbol_scanning" and p["stages"]["symbol_scanning"]["status"] == "running"
    ]
    assert len(counter_pushes) <= 1 + int(elapsed / 0.1) + 1  # the start, then one per 100 ms window
    assert len(counter_pushes) < 200
    last = pushes[-1]  # the handover: one push for both changes
    assert (last["stages"]["symbol_scanning"]["status"], last["current_stage"]) == ("completed", "finalization")


def test_no_push_when_pushing_is_disabled(pushes: list[dict[str, Any]], settings: Any) -> None:
    settings.TECHNIC_PROGRESS_PUSH = False
    sid = new_id()
    store.stage_started(sid, "universe_loading", 1)
    assert pushes == []
    assert store.snapshot(sid) is not None


def test_every_key_expires(pushes: list[dict[str, Any]], redis_server: RedisServer) -> None:
    sid = new_id()
    store.stage_started(sid, "data_fetching", 10)
    store.advanced(sid, "data_fetching", 1)
    client = redis_server.client()
    keys = client.keys(f"*progress:{sid}:*")
    names = [k.decode() if isinstance(k, bytes) else k for k in keys]
    assert {name.rsplit(":", 1)[1] for name in names} >= {"state", "etas"}
    assert all(client.pttl(k) > 0 for k in keys)


def test_eta_accuracy_compares_each_prediction_with_the_real_end(redis_server: RedisServer) -> None:
    sid = new_id()
    key = f"technic:progress:{sid}:etas"
    # at t=100 the scanning stage was predicted to end at 110 and the scan at 112;
    # at t=105 at 108 and 111. Scanning really ended at 109, the scan at 111.
    redis_server.client().rpush(key, json.dumps([100.0, "symbol_scanning", 10.0, 12.0]))
    redis_server.client().rpush(key, json.dumps([105.0, "symbol_scanning", 3.0, 6.0]))
    accuracy = store.eta_accuracy(sid, {"symbol_scanning": 109.0, "finalization": None}, 111.0)
    assert accuracy["overall"] == {
        "samples": 2,
        "mean_abs_error_seconds": 0.5,
        "max_abs_error_seconds": 1.0,
        "mean_abs_error_pct": round(100 * 0.5 / 11.0, 1),
    }
    assert accuracy["stages"]["symbol_scanning"]["mean_abs_error_seconds"] == 1.0
    assert "finalization" not in accuracy["stages"]


@pytest.mark.django_db
def test_a_scan_redis_knows_nothing_of_gets_its_kept_final_snapshot_or_one_from_its_row(
    redis_server: RedisServer,
) -> None:
    pending = Scan.objects.create(config={}, data_provider="demo")
    snap = store.current_snapshot(pending)
    assert (snap["status"], snap["seq"], snap["current_stage"], snap["overall_progress"]) == ("pending", 0, None, 0.0)
    assert snap["message"] == "Waiting for a worker"
    final = {"scan_id": "x", "seq": 42, "status": "completed", "overall_progress": 100.0}
    done = Scan.objects.create(config={}, data_provider="demo", status="completed", progress=final)
    assert store.current_snapshot(done) == final


def test_learned_rates_blend_completed_scans_and_become_the_etas_priors(
    pushes: list[dict[str, Any]], redis_server: RedisServer
) -> None:
    redis_server.client().delete("technic:progress:rates")
    store.learn_rates(1000, {"symbol_scanning": 2.0, "finalization": None})
    rates = store.learn_rates(1000, {"symbol_scanning": 1.0})
    assert rates == {"symbol_scanning": 750.0}
    slow = {stage: 10.0 for stage in ("universe_loading", "data_fetching", "symbol_scanning", "finalization")}
    store.learn_rates(1, {stage: 1 / rate for stage, rate in slow.items()})  # 1 symbol at 10/s: blended down
    sid = new_id()
    snap = store.stage_started(sid, "data_fetching", 1000)
    assert snap is not None
    # 1,000 symbols to fetch at the learned 10 symbols/s (the default prior says 1,000/s: 1 s)
    assert snap["overall_eta"] > 90.0


def test_a_batch_reported_twice_is_counted_once_and_no_counter_passes_its_total(
    pushes: list[dict[str, Any]],
) -> None:
    sid = new_id()
    store.stage_started(sid, "universe_loading", 1)
    store.handover(sid, "universe_loading", "symbol_scanning", 200)
    for done in (40, 80):
        store.batch_advanced(sid, "symbol_scanning", 0, done, "AAPL")
    for done in (40, 80, 100):  # its worker died; delivered again, the batch starts over
        store.batch_advanced(sid, "symbol_scanning", 0, done, "AAPL")
    snap = store.batch_advanced(sid, "symbol_scanning", 1, 100, "MSFT")
    assert snap is not None and (snap["current"], snap["total"]) == (200, 200)
    over = store.advanced(sid, "symbol_scanning", 50)
    assert over is not None and over["stages"]["symbol_scanning"]["current"] == 200


def test_cache_lookups_count_only_with_the_units_they_came_with(pushes: list[dict[str, Any]]) -> None:
    sid = new_id()
    store.stage_started(sid, "universe_loading", 1)
    store.handover(sid, "universe_loading", "data_fetching", 100)
    store.batch_advanced(sid, "data_fetching", 0, 100, cache_hits=0, cache_misses=100)
    again = store.batch_advanced(sid, "data_fetching", 0, 100, cache_hits=100, cache_misses=0)
    assert again is not None
    assert (again["cache"]["hits"], again["cache"]["misses"], again["current"]) == (0, 100, 100)


def test_stages_that_end_after_a_cancel_request_are_cancelled_and_keep_their_count(
    pushes: list[dict[str, Any]],
) -> None:
    sid = new_id()
    snaps = [store.stage_started(sid, "universe_loading", 1)]
    snaps.append(store.handover(sid, "universe_loading", "data_fetching", 100))
    snaps.append(store.batch_advanced(sid, "data_fetching", 0, 30))
    snaps.append(store.cancel_requested(sid))
    handed = store.handover(sid, "data_fetching", "symbol_scanning", 100)
    final = store.finished(sid, "cancelled", "cancelled")
    snaps += [handed, final]
    assert handed is not None and final is not None
    fetching = handed["stages"]["data_fetching"]
    assert (fetching["status"], fetching["progress"], fetching["current"]) == ("cancelled", 30.0, 30)
    assert {name: st["status"] for name, st in final["stages"].items()} == {
        "universe_loading": "completed",
        "data_fetching": "cancelled",
        "symbol_scanning": "cancelled",
        "finalization": "cancelled",
    }
    overall = [s["overall_progress"] for s in snaps if s]
    assert overall == sorted(overall) and overall[-1] < 100


def lost_progress(redis_server: RedisServer, scan_id: Any) -> None:
    """What a FLUSHALL does to one scan's progress (the suite's shared Redis is not flushed)."""
    client = redis_server.client()
    for key in client.scan_iter(f"technic:progress:{scan_id}:*"):
        client.delete(key)


def running_scan(**fields: Any) -> Scan:
    """A 100-symbol scan in symbol_scanning since 5 s, 30 of its symbols with an outcome."""
    now = timezone.now()
    second = timedelta(seconds=1)
    scan = Scan.objects.create(
        config={},
        data_provider="demo",
        status="running",
        total_symbols=100,
        universe=[[f"S{i:03d}", "", "Energy"] for i in range(100)],
        started_at=now - 10 * second,
        universe_loading_started_at=now - 10 * second,
        universe_loading_ended_at=now - 9 * second,
        data_fetching_started_at=now - 9 * second,
        data_fetching_ended_at=now - 5 * second,
        symbol_scanning_started_at=now - 5 * second,
        current_stage="symbol_scanning",
        **fields,
    )
    ScanSkip.objects.bulk_create(
        ScanSkip(scan=scan, symbol=f"S{i:03d}", reason="no_data", detail="") for i in range(30)
    )
    return scan


@pytest.mark.django_db
def test_progress_redis_lost_is_rebuilt_from_the_database_by_the_next_update(
    pushes: list[dict[str, Any]], redis_server: RedisServer
) -> None:
    scan = running_scan()
    store.stage_started(scan.id, "universe_loading", 1)
    before = store.handover(scan.id, "universe_loading", "data_fetching", 100)
    assert before is not None
    lost_progress(redis_server, scan.id)
    snap = store.advanced(scan.id, "symbol_scanning", 10)
    assert snap is not None
    assert (snap["status"], snap["current_stage"]) == ("running", "symbol_scanning")
    assert [snap["stages"][s]["status"] for s in snap["stages"]] == ["completed", "completed", "running", "pending"]
    timings = scan.stage_timings()
    for stage in ("universe_loading", "data_fetching"):
        assert snap["stages"][stage]["seconds"] == pytest.approx(timings[stage]["seconds"], abs=0.002)
    assert (snap["current"], snap["total"]) == (40, 100)  # 30 in the database, 10 reported since
    assert snap["seq"] > before["seq"], "clients would drop the rebuilt snapshots as stale"


@pytest.mark.django_db
def test_the_final_snapshot_after_redis_lost_the_progress_agrees_with_the_row(
    pushes: list[dict[str, Any]], redis_server: RedisServer
) -> None:
    scan = running_scan()
    Scan.objects.filter(id=scan.id).update(status="failed", finished_at=timezone.now(), error_code="X")
    scan.refresh_from_db()
    late = store.advanced(scan.id, "symbol_scanning", 10)  # a batch still running after the failure
    assert late is None and store.snapshot(scan.id) is None
    final = store.finished(scan.id, "failed", "X: broke", scan, scanned=30)
    assert final is not None and final["status"] == "failed"
    assert [final["stages"][s]["status"] for s in final["stages"]] == ["completed", "completed", "failed", "pending"]
    assert (final["stages"]["symbol_scanning"]["current"], final["stages"]["symbol_scanning"]["total"]) == (30, 100)
    assert scan.finished_at is not None and scan.started_at is not None
    assert final["elapsed_seconds"] == pytest.approx((scan.finished_at - scan.started_at).total_seconds(), abs=0.002)
    Scan.objects.filter(id=scan.id).update(progress=final)
    scan.refresh_from_db()
    lost_progress(redis_server, scan.id)
    assert store.finished(scan.id, "failed", "again", scan, scanned=30) is None  # its end is kept
