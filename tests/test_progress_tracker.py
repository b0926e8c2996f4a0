"""The pure multi-stage tracker: weights, percentages, ETAs, monotonicity, edge cases."""

from __future__ import annotations

import pytest

from progress.tracker import STAGES, ProgressTracker, format_eta, validate_weights


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def run_to_scanning(tracker: ProgressTracker, clock: FakeClock, total: int) -> None:
    tracker.start_stage("universe_loading", 1)
    clock.tick(0.1)
    tracker.complete_stage("universe_loading")
    tracker.start_stage("data_fetching", total)
    clock.tick(1.0)
    tracker.complete_stage("data_fetching")
    tracker.start_stage("symbol_scanning", total)


def test_overall_progress_weighs_the_stages_five_twenty_seventy_and_five_percent_by_default(
    clock: FakeClock,
) -> None:
    tracker = ProgressTracker("s", clock=clock)
    run_to_scanning(tracker, clock, 100)
    assert tracker.snapshot()["overall_progress"] == 25.0  # universe 5 + data 20
    tracker.advance("symbol_scanning", 50)
    assert tracker.snapshot()["overall_progress"] == 60.0  # + half of scanning's 70
    tracker.complete_stage("symbol_scanning")
    assert tracker.snapshot()["overall_progress"] == 95.0


@pytest.mark.parametrize(
    "weights",
    [
        {"universe_loading": 0.5, "data_fetching": 0.5, "symbol_scanning": 0.5, "finalization": 0.5},
        {"universe_loading": 0.5, "data_fetching": 0.5},
        {"universe_loading": -0.1, "data_fetching": 0.4, "symbol_scanning": 0.6, "finalization": 0.1},
    ],
)
def test_weights_that_do_not_cover_the_four_stages_or_sum_to_one_are_refused(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        validate_weights(weights)


def test_overall_progress_is_the_weighted_sum_of_stage_progress(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    run_to_scanning(tracker, clock, total=505)
    tracker.advance("symbol_scanning", 227, "Scanning AAPL (227/505)")
    snap = tracker.snapshot()
    assert snap["overall_progress"] == pytest.approx(5 + 20 + 70 * 227 / 505, abs=0.05)
    assert snap["stage_progress"] == pytest.approx(100 * 227 / 505, abs=0.05)
    assert (snap["current"], snap["total"]) == (227, 505)
    assert snap["current_stage"] == "symbol_scanning"
    assert snap["message"] == "Scanning AAPL (227/505)"
    assert [snap["stages"][s]["status"] for s in STAGES] == ["completed", "completed", "running", "pending"]


def test_etas_are_numbers_from_the_first_instant_and_not_zero_before_the_end(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    tracker.start_stage("universe_loading", 1)
    first = tracker.snapshot()
    assert first["overall_eta"] > 0 and first["stage_eta"] > 0
    run_to_scanning(tracker, clock, total=1000)
    snap = tracker.snapshot()
    assert snap["stage_eta"] > 0 and snap["overall_eta"] >= snap["stage_eta"]
    for done in range(100, 1000, 100):
        clock.tick(0.5)
        tracker.advance("symbol_scanning", done)
        snap = tracker.snapshot()
        assert snap["stage_eta"] > 0
        assert snap["overall_eta"] > 0


def test_stage_eta_converges_to_the_observed_rate(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock, prior_rates={"symbol_scanning": 10_000.0})
    run_to_scanning(tracker, clock, total=1000)
    clock.tick(5.0)
    tracker.advance("symbol_scanning", 500)  # 100 symbols/s observed
    assert tracker.snapshot()["stage_eta"] == pytest.approx(5.0, rel=0.15)


def test_overall_progress_never_decreases_and_reaches_100_only_when_completed(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    seen = []
    run_to_scanning(tracker, clock, total=10)
    for done in (3, 2, 7, 10, 10):
        tracker.advance("symbol_scanning", done)
        seen.append(tracker.snapshot()["overall_progress"])
    tracker.complete_stage("symbol_scanning")
    tracker.start_stage("finalization", 1)
    tracker.complete_stage("finalization")
    seen.append(tracker.snapshot()["overall_progress"])
    assert seen == sorted(seen)
    assert max(seen) < 100
    tracker.finish("completed")
    assert tracker.snapshot()["overall_progress"] == 100


def test_seq_increases_with_every_change(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    seqs = []
    run_to_scanning(tracker, clock, total=4)
    for done in range(1, 5):
        tracker.advance("symbol_scanning", done)
        seqs.append(tracker.snapshot()["seq"])
    assert seqs == sorted(set(seqs))


def test_an_empty_universe_completes_at_100_percent(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    tracker.start_stage("universe_loading", 1)
    tracker.complete_stage("universe_loading")
    for stage in ("data_fetching", "symbol_scanning"):
        tracker.start_stage(stage, 0)
        assert tracker.snapshot()["stage_eta"] == 0
        tracker.complete_stage(stage)
    tracker.start_stage("finalization", 1)
    tracker.complete_stage("finalization")
    tracker.finish("completed")
    snap = tracker.snapshot()
    assert snap["overall_progress"] == 100
    assert snap["overall_eta"] == 0
    assert all(snap["stages"][s]["progress"] == 100 for s in STAGES)


def test_per_stage_seconds_are_measured_per_stage_not_cumulatively(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    run_to_scanning(tracker, clock, total=1)
    clock.tick(2.0)
    tracker.complete_stage("symbol_scanning")
    stages = tracker.snapshot()["stages"]
    assert stages["universe_loading"]["seconds"] == pytest.approx(0.1)
    assert stages["data_fetching"]["seconds"] == pytest.approx(1.0)
    assert stages["symbol_scanning"]["seconds"] == pytest.approx(2.0)
    assert stages["finalization"]["seconds"] is None


def test_a_cancelled_scan_keeps_its_progress_below_100(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    run_to_scanning(tracker, clock, total=10)
    tracker.advance("symbol_scanning", 5)
    tracker.finish("cancelled")
    snap = tracker.snapshot()
    assert snap["status"] == "cancelled"
    assert snap["overall_progress"] == pytest.approx(25 + 35, abs=0.05)
    assert snap["stages"]["symbol_scanning"]["status"] == "cancelled"
    with pytest.raises(ValueError):
        tracker.finish("running")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (0.3, "<1s"), (3.7, "3s"), (75, "1m 15s"), (3725, "1h 02m")])
def test_eta_formatting(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text


def recorded_state(**overrides: object) -> dict[str, object]:
    stages: dict[str, dict[str, float | None]] = {
        s: {"started": None, "ended": None, "current": 0, "total": 0} for s in STAGES
    }
    stages["universe_loading"] = {"started": 1000.0, "ended": 1000.1, "current": 1, "total": 1}
    stages["data_fetching"] = {"started": 1000.1, "ended": 1001.1, "current": 100, "total": 100}
    stages["symbol_scanning"] = {"started": 1001.1, "ended": None, "current": 40, "total": 100}
    state: dict[str, object] = {"seq": 9, "status": "running", "started": 1000.0, "stage": 2, "stages": stages}
    state.update(overrides)
    return state


def test_a_restored_tracker_reports_what_the_event_driven_one_would(clock: FakeClock) -> None:
    live = ProgressTracker("s", clock=clock)
    run_to_scanning(live, clock, 100)
    live.advance("symbol_scanning", 40)
    clock.tick(0.5)
    restored = ProgressTracker.restore("s", recorded_state(), clock=clock).snapshot()
    expected = live.snapshot()
    for key in ("status", "current_stage", "overall_progress", "stage_progress", "overall_eta", "stage_eta"):
        assert restored[key] == expected[key], key
    assert restored["seq"] == 9
    assert [restored["stages"][s]["status"] for s in STAGES] == ["completed", "completed", "running", "pending"]


def test_a_restored_failed_scan_marks_its_running_stage_failed_and_stays_below_100(clock: FakeClock) -> None:
    snap = ProgressTracker.restore("s", recorded_state(status="failed", ended=1002.0), clock=clock).snapshot()
    assert snap["stages"]["symbol_scanning"]["status"] == "failed"
    assert snap["stages"]["symbol_scanning"]["seconds"] == pytest.approx(0.9)
    assert snap["overall_progress"] < 100.0
    assert snap["overall_eta"] == 0.0


def test_a_restored_pending_scan_has_an_eta_before_anything_started(clock: FakeClock) -> None:
    snap = ProgressTracker.restore("s", {"seq": 0, "status": "pending"}, clock=clock).snapshot()
    assert snap["current_stage"] is None and snap["overall_progress"] == 0.0
    assert snap["overall_eta"] > 0


def test_a_restored_cancelled_scan_shows_the_stages_the_cancel_cut_short_as_cancelled(clock: FakeClock) -> None:
    state = recorded_state(status="cancelled", ended=1002.0, cancel_requested=1001.0)
    stages = state["stages"]
    assert isinstance(stages, dict)
    stages["data_fetching"] = {"started": 1000.1, "ended": 1001.1, "current": 60, "total": 100}
    snap = ProgressTracker.restore("s", state, clock=clock).snapshot()
    assert {s: snap["stages"][s]["status"] for s in STAGES} == {
        "universe_loading": "completed",  # it ended before the cancel
        "data_fetching": "cancelled",  # it ended after: cut short, not "completed 100 %"
        "symbol_scanning": "cancelled",
        "finalization": "cancelled",  # never ran
    }
    assert snap["stages"]["data_fetching"]["progress"] == 60.0
    assert snap["overall_progress"] == pytest.approx(5 + 20 * 0.6 + 70 * 0.4, abs=0.05)


def test_a_scan_that_completed_although_a_cancel_came_late_shows_its_stages_completed(clock: FakeClock) -> None:
    state = recorded_state(status="completed", ended=1002.0, cancel_requested=1000.05)
    snap = ProgressTracker.restore("s", state, clock=clock).snapshot()
    assert [snap["stages"][s]["status"] for s in STAGES[:3]] == ["completed"] * 3


def test_a_live_tracker_cut_short_by_a_cancel_keeps_the_stages_count(clock: FakeClock) -> None:
    tracker = ProgressTracker("s", clock=clock)
    tracker.start_stage("universe_loading", 1)
    tracker.complete_stage("universe_loading")
    tracker.start_stage("data_fetching", 100)
    tracker.advance("data_fetching", 30)
    before = tracker.snapshot()["overall_progress"]
    tracker.request_cancel()
    clock.tick(0.1)
    tracker.complete_stage("data_fetching")
    tracker.finish("cancelled")
    snap = tracker.snapshot()
    assert snap["stages"]["data_fetching"] == {**snap["stages"]["data_fetching"], "status": "cancelled", "current": 30}
    assert [snap["stages"][s]["status"] for s in STAGES] == ["completed", "cancelled", "cancelled", "cancelled"]
    assert snap["overall_progress"] == before
