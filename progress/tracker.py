"""A pure multi-stage progress tracker: stage and overall percentages, ETAs and throughput.

It knows nothing of Redis or Channels; it turns stage events into the snapshot payload of
PRODUCT.md. Callers persist or display ``snapshot()``.

ETAs are sensible from the first second: a stage's rate is a blend of a prior rate (units
per second, configurable) and the observed rate, weighted by how much of the stage is done,
so there is no ``None`` at t=0 and no jump to zero before the stage ends. Pending stages are
estimated from the scan's symbol count and their prior rates. Priors are symbols per second per
stage: defaults here, or what recent scans measured (``progress.store.learned_rates``).

A stage is ``completed`` once it ended, unless it ended after a cancel was requested (its work
was cut short): then it is ``cancelled``, as is every stage a cancelled scan never ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

STAGES: tuple[str, ...] = ("universe_loading", "data_fetching", "symbol_scanning", "finalization")
DEFAULT_WEIGHTS: dict[str, float] = {
    "universe_loading": 0.05,
    "data_fetching": 0.20,
    "symbol_scanning": 0.70,
    "finalization": 0.05,
}
# Prior throughput (symbols per second) before anything was measured: roughly what two worker
# processes do on the demo market; completed scans replace these (progress.store.learn_rates).
DEFAULT_PRIOR_RATES: dict[str, float] = {
    "universe_loading": 20000.0,
    "data_fetching": 2500.0,
    "symbol_scanning": 5000.0,
    "finalization": 50000.0,
}
TERMINAL = ("completed", "failed", "cancelled")
PRIOR_WEIGHT = 0.1  # fraction of a stage after which the observed rate replaces the prior
DEFAULT_EXPECTED_UNITS = 500  # symbols assumed for stages whose size is not known yet


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights for exactly the four stages, each in [0, 1], summing to 1 (within 1e-9)."""
    if set(weights) != set(STAGES):
        raise ValueError(f"stage weights must name exactly {', '.join(STAGES)}")
    if any(not 0.0 <= w <= 1.0 for w in weights.values()):
        raise ValueError("each stage weight must be between 0 and 1")
    if abs(sum(weights.values()) - 1.0) > 1e-9:
        raise ValueError(f"stage weights must sum to 1, got {sum(weights.values()):g}")
    return {s: float(weights[s]) for s in STAGES}


def _ceil_tenth(seconds: float) -> float:
    """Rounded up, so an ETA never shows 0 while work remains."""
    return math.ceil(seconds * 10.0 - 1e-9) / 10.0


def format_eta(seconds: float) -> str:
    if 0 < seconds < 1:
        return "<1s"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


@dataclass
class _Stage:
    weight: float
    prior_rate: float
    status: str = "pending"
    current: int = 0
    total: int = 0
    started: float | None = None
    ended: float | None = None

    @property
    def fraction(self) -> float:
        if self.status == "completed":
            return 1.0
        if self.total <= 0:
            return 0.0
        return min(1.0, self.current / self.total)

    def seconds(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else now) - self.started

    def seconds_per_unit(self, now: float) -> float:
        """The prior until units are done, then a blend that trusts the observation fully
        once ``PRIOR_WEIGHT`` of the stage is done."""
        prior = 1.0 / self.prior_rate
        if self.current <= 0:
            return prior
        observed = (self.seconds(now) or 0.0) / self.current
        w = min(1.0, self.current / max(1.0, PRIOR_WEIGHT * self.total))
        return w * observed + (1.0 - w) * prior

    def eta(self, now: float) -> float:
        if self.status == "completed":
            return 0.0
        remaining = max(0, self.total - self.current)
        return remaining * self.seconds_per_unit(now)


class ProgressTracker:
    """Tracks one scan through the four stages. Not thread-safe; one owner updates it."""

    def __init__(
        self,
        scan_id: str,
        weights: Mapping[str, float] | None = None,
        prior_rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        expected_units: int = DEFAULT_EXPECTED_UNITS,
    ) -> None:
        w = validate_weights(weights or DEFAULT_WEIGHTS)
        rates = {**DEFAULT_PRIOR_RATES, **(prior_rates or {})}
        self.scan_id = scan_id
        self._clock = clock
        self._expected_units = expected_units
        self._stages = {s: _Stage(weight=w[s], prior_rate=rates[s]) for s in STAGES}
        self._started: float | None = None
        self._ended: float | None = None
        self.status = "pending"
        self.current_stage: str | None = None
        self.cancel_requested: float | None = None
        self.message = ""
        self.seq = 0
        self._overall = 0.0
        self._cache: dict[str, Any] = {"hits": 0, "misses": 0, "hit_rate": None, "available": True}

    def start_stage(self, stage: str, total: int, message: str = "") -> None:
        now = self._clock()
        if self._started is None:
            self._started = now
        self.status = "running"
        st = self._stages[stage]
        st.status, st.total, st.current, st.started = "running", max(0, total), 0, now
        self.current_stage = stage
        self.message = message or f"{stage.replace('_', ' ').capitalize()}"
        self._bump()

    def advance(self, stage: str, current: int, message: str = "") -> None:
        """Set the units done in ``stage`` (never moves backwards)."""
        st = self._stages[stage]
        st.current = max(st.current, min(current, st.total))
        if message:
            self.message = message
        self._bump()

    def request_cancel(self) -> None:
        """A cancel was asked for: stages that end from now on were cut short."""
        if self.cancel_requested is None:
            self.cancel_requested = self._clock()
        self._bump()

    def complete_stage(self, stage: str, message: str = "") -> None:
        """``stage`` ended: all its units are done, unless a cancel cut it short (it keeps
        its count and is ``cancelled``)."""
        st = self._stages[stage]
        st.ended = self._clock()
        st.status = self._ended_status(st.ended)
        if st.status == "completed":
            st.current = st.total
        if message:
            self.message = message
        self._bump()

    def set_cache(self, hits: int, misses: int, available: bool = True) -> None:
        """The scan's price-cache lookups; ``available`` False once the cache could not be reached."""
        total = hits + misses
        rate = round(100.0 * hits / total, 1) if total else None
        self._cache = {"hits": hits, "misses": misses, "hit_rate": rate, "available": available}

    def finish(self, status: str, message: str = "") -> None:
        if status not in TERMINAL:
            raise ValueError(f"finish() needs a terminal status, got {status!r}")
        now = self._clock()
        self.status = status
        self._ended = now
        for st in self._stages.values():
            if st.status == "running":
                st.status = "completed" if status == "completed" else status
                st.ended = now
            elif st.status == "pending" and status == "cancelled":
                st.status = "cancelled"
        if message:
            self.message = message
        self._bump()

    @classmethod
    def restore(
        cls,
        scan_id: str,
        state: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        prior_rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> ProgressTracker:
        """A tracker in the state another process recorded (times on ``clock``'s scale).

        ``state``: ``seq``, ``status``, ``started``, ``ended``, ``stage`` (index of the current
        stage, -1 before the first), ``message``, ``cache_hits``, ``cache_misses``, ``cache_down`` and per stage
        ``stages[name]`` with ``current``, ``total``, ``started``, ``ended``, and optionally
        ``cancel_requested`` (when a cancel was asked for). A stage is running between its start
        and end; once the scan has ended, a stage still running takes the scan's status, as
        ``finish`` does; a stage that ended after the cancel request is ``cancelled``, as is one a
        cancelled scan never started.
        """
        tracker = cls(scan_id, weights=weights, prior_rates=prior_rates, clock=clock)
        tracker.seq = int(state.get("seq", 0))
        tracker.status = str(state.get("status", "pending"))
        tracker._started, tracker._ended = state.get("started"), state.get("ended")
        tracker.cancel_requested = state.get("cancel_requested")
        index = int(state.get("stage", -1))
        tracker.current_stage = STAGES[index] if 0 <= index < len(STAGES) else None
        tracker.message = str(state.get("message", ""))
        for name, st in tracker._stages.items():
            recorded = state.get("stages", {}).get(name, {})
            st.total, st.current = int(recorded.get("total", 0)), int(recorded.get("current", 0))
            st.started, st.ended = recorded.get("started"), recorded.get("ended")
            if st.ended is not None:
                st.status = tracker._ended_status(st.ended)
            elif st.started is not None and tracker.status in TERMINAL:  # as finish() leaves it
                st.status = "completed" if tracker.status == "completed" else tracker.status
                st.ended = tracker._ended
            elif st.started is not None:
                st.status = "running"
            elif tracker.status == "cancelled":
                st.status = "cancelled"
        tracker.set_cache(
            int(state.get("cache_hits", 0)), int(state.get("cache_misses", 0)), not state.get("cache_down")
        )
        tracker._overall = tracker._progress()
        return tracker

    def _ended_status(self, ended: float) -> str:
        """A stage that ended at ``ended``: cut short if that was after a cancel request (and the
        scan did not complete regardless)."""
        cut_short = self.cancel_requested is not None and ended >= self.cancel_requested
        return "cancelled" if cut_short and self.status != "completed" else "completed"

    def _progress(self) -> float:
        progress = sum(st.weight * st.fraction for st in self._stages.values()) * 100.0
        return progress if self.status == "completed" else min(progress, 99.9)

    def _bump(self) -> None:
        self.seq += 1
        self._overall = max(self._overall, self._progress())

    def _elapsed(self, now: float) -> float:
        if self._started is None:
            return 0.0
        return (self._ended if self._ended is not None else now) - self._started

    def _overall_eta(self, now: float) -> float:
        if self.status in TERMINAL:
            return 0.0
        eta = 0.0
        for st in self._stages.values():
            if st.status == "running":
                eta += st.eta(now)
            elif st.status == "pending":
                eta += max(st.total, self._known_units()) / st.prior_rate
        return eta

    def _known_units(self) -> int:
        known = max(self._stages["data_fetching"].total, self._stages["symbol_scanning"].total)
        return known or self._expected_units

    def snapshot(self) -> dict[str, Any]:
        """The progress payload of PRODUCT.md."""
        now = self._clock()
        stage = self._stages.get(self.current_stage) if self.current_stage else None
        stage_seconds = stage.seconds(now) if stage else None
        throughput = stage.current / stage_seconds if stage and stage_seconds else 0.0
        stage_eta = stage.eta(now) if stage and self.status not in TERMINAL else 0.0
        overall_eta = self._overall_eta(now)
        return {
            "scan_id": self.scan_id,
            "seq": self.seq,
            "status": self.status,
            "current_stage": self.current_stage,
            "stages": {
                name: {
                    "weight": st.weight,
                    "progress": round(st.fraction * 100.0, 1),
                    "status": st.status,
                    "seconds": None if st.seconds(now) is None else round(st.seconds(now) or 0.0, 3),
                    "current": st.current,
                    "total": st.total,
                }
                for name, st in self._stages.items()
            },
            "overall_progress": round(self._overall, 1),
            "stage_progress": round(stage.fraction * 100.0, 1) if stage else 0.0,
            "current": stage.current if stage else 0,
            "total": stage.total if stage else 0,
            "overall_eta": _ceil_tenth(overall_eta),
            "overall_eta_formatted": format_eta(overall_eta),
            "stage_eta": _ceil_tenth(stage_eta),
            "stage_eta_formatted": format_eta(stage_eta),
            "stage_throughput": round(throughput, 1),
            "symbols_per_second": round(self._symbols_per_second(now), 1),
            "elapsed_seconds": round(self._elapsed(now), 3),
            "message": self.message,
            "cache": dict(self._cache),
        }

    def _symbols_per_second(self, now: float) -> float:
        st = self._stages["symbol_scanning"]
        seconds = st.seconds(now)
        return st.current / seconds if seconds else 0.0
