"""The progress store against a real redis-server: atomic updates, monotonic seq and progress,
the push throttle, TTLs, the ETA ledger and the database fallback."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from progress import push, store
from scanner.models import Scan
from tests.processes import RedisServer


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
