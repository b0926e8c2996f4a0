"""Live progress in Redis: the one module that owns its layout.

Per scan (prefix ``<TECHNIC_KEY_PREFIX>:progress:<scan_id>``):

* ``:state`` — a hash of what the stage tasks reported: ``seq``, ``status``, ``started``,
  ``ended``, ``stage`` (index of the current stage), ``message``, ``cache_hits``,
  ``cache_misses``, ``cache_down``, ``cancel_requested`` (when a cancel was asked for), and per
  stage ``<stage>.started``, ``.ended``, ``.current``, ``.total``, ``.last`` (last symbol). Every
  update is one Lua call that applies its changes, increments ``seq`` and returns the whole
  hash, so the snapshot built from it is consistent: counters only grow and never pass their
  stage's total, stages only start and end, the current stage only moves forward, nothing
  changes once the status is terminal. Hence ``seq`` and ``overall_progress`` never go back.
* ``:batches`` — per batch of a counting stage (``<stage>:<index>``), the most units it has
  reported done. A batch reports how far it got, not increments, and the stage counter grows
  only by what a report adds above that batch's best: a redelivered batch, which starts again
  from zero, is counted once.
* ``:push`` — the push throttle (``SET NX PX``): a counter update reaches the channel layer only
  if nothing was pushed in the last ``PUSH_INTERVAL_MS``; stage starts, handovers (a stage's
  end and the next one's start, one update) and terminal states always, at once (and restart
  the interval).
* ``:etas`` — the ETA ledger: what each pushed snapshot predicted, for ``eta_accuracy``.

And ``<prefix>:progress:rates``: each stage's symbols per second as completed scans measured
it, the tracker's prior for the next scans' ETAs (``learn_rates``, ``learned_rates``).

Every key expires after ``TTL_SECONDS``; a finished scan's last snapshot is also kept on its
database row (``Scan.progress``), so ``current_snapshot`` answers after Redis forgot it.

When the state of a scan that has begun is missing (Redis was flushed or restarted without its
data, or the key expired) the next update rebuilds it from the database row first — status,
stage times, the symbols with an outcome — then applies itself (``_rebuild_fields``); ``seq``
then goes on from the microseconds since the scan was created, above any ``seq`` it had, so
clients keep taking its snapshots. The terminal update also fills in, from the row, whatever
Redis lacks, so the final snapshot agrees with the database.
The snapshot is the payload of PRODUCT.md, built by ``progress.tracker.ProgressTracker``, plus
``updated_at`` (epoch seconds when it was built) and, once terminal, ``results_url``.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings

from infra.redis_client import main_redis
from progress import push
from progress.tracker import DEFAULT_WEIGHTS, STAGES, TERMINAL, ProgressTracker

logger = logging.getLogger(__name__)


class ScanRow(Protocol):
    """What this module reads of a scan's database row (``scanner.models.Scan``); the per-stage
    ``<stage>_started_at`` and ``<stage>_ended_at`` are read by name."""

    @property
    def id(self) -> Any: ...
    @property
    def status(self) -> Any: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def progress(self) -> Any: ...
    @property
    def total_symbols(self) -> int: ...
    @property
    def error_message(self) -> str: ...
    @property
    def is_finished(self) -> bool: ...
    @property
    def symbol_scanning_started_at(self) -> datetime | None: ...
    @property
    def symbol_scanning_ended_at(self) -> datetime | None: ...


class _Rows:
    """How to read scan rows, registered by the app that owns them (``use_rows``)."""

    row: Callable[[uuid.UUID], ScanRow | None] | None = None
    with_outcome: Callable[[Any], int] | None = None


def use_rows(row: Callable[[uuid.UUID], ScanRow | None], with_outcome: Callable[[Any], int]) -> None:
    """Register where scan rows are read, for rebuilding lost progress: ``row(scan_id)`` (None
    when there is no such scan) and ``with_outcome(scan_id)``, how many of its symbols have a
    result or a skip. The scanner app does it when Django starts."""
    _Rows.row, _Rows.with_outcome = row, with_outcome


TTL_SECONDS = 2 * 24 * 3600
RATES_TTL_SECONDS = 30 * 24 * 3600
RATES_REREAD_SECONDS = 30.0
PUSH_INTERVAL_MS = 100
ETA_SAMPLES_KEPT = 2000
COUNTING_STAGES = {"data_fetching": "Fetching bars", "symbol_scanning": "Scanning"}
LOST = -1  # the update script's answer when the state it needs is missing

# One change to the state hash: (kind, field, value, …), applied by the update script.
Op = tuple[Any, ...]

# ARGV[5]: '' when the state must already exist (else the script answers LOST and changes
# nothing), or a JSON object of fields to seed a missing state with before applying the ops.
_UPDATE = """
local state, throttle, batches = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', state) == 0 then
  if ARGV[5] == '' then return -1 end
  for field, value in pairs(cjson.decode(ARGV[5])) do redis.call('HSET', state, field, value) end
end
local status = redis.call('HGET', state, 'status')
if status == 'completed' or status == 'failed' or status == 'cancelled' then return false end
local function add_units(stage, units)
  local field = stage .. '.current'
  local current = (tonumber(redis.call('HGET', state, field)) or 0) + units
  local total = tonumber(redis.call('HGET', state, stage .. '.total'))
  if total ~= nil and current > total then current = total end
  redis.call('HSET', state, field, current)
end
for _, op in ipairs(cjson.decode(ARGV[1])) do
  local kind, field, value = op[1], op[2], op[3]
  if kind == 'set' then redis.call('HSET', state, field, value)
  elseif kind == 'setnx' then redis.call('HSETNX', state, field, value)
  elseif kind == 'incr' then redis.call('HINCRBY', state, field, value)
  elseif kind == 'max' then
    local current = tonumber(redis.call('HGET', state, field))
    if current == nil or tonumber(value) > current then redis.call('HSET', state, field, value) end
  elseif kind == 'add' then add_units(field, tonumber(value))
  elseif kind == 'batch' then
    local key = field .. ':' .. op[4]
    local best = tonumber(redis.call('HGET', batches, key)) or 0
    local done = tonumber(value)
    if done > best then
      redis.call('HSET', batches, key, done)
      add_units(field, done - best)
      if op[5] ~= 0 then redis.call('HINCRBY', state, 'cache_hits', op[5]) end
      if op[6] ~= 0 then redis.call('HINCRBY', state, 'cache_misses', op[6]) end
    end
    redis.call('EXPIRE', batches, ARGV[2])
  elseif kind == 'fill' then
    if redis.call('HEXISTS', state, 'cancel_requested') == 0 then
      redis.call('HSET', state, field .. '.current', redis.call('HGET', state, field .. '.total') or 0)
    end
  end
end
redis.call('HINCRBY', state, 'seq', 1)
redis.call('EXPIRE', state, ARGV[2])
local push
if ARGV[3] == '1' then
  redis.call('SET', throttle, '1', 'PX', ARGV[4])
  push = true
else
  push = redis.call('SET', throttle, '1', 'NX', 'PX', ARGV[4]) ~= false
end
return {push and 1 or 0, redis.call('HGETALL', state)}
"""


def stage_weights() -> dict[str, float]:
    """Each stage's share of overall progress: TECHNIC_STAGE_WEIGHTS, or the default weights
    when it is not set (checked at start-up by ``progress.apps``)."""
    return dict(settings.TECHNIC_STAGE_WEIGHTS) or dict(DEFAULT_WEIGHTS)


def _key(scan_id: Any, part: str) -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:progress:{scan_id}:{part}"


def group_name(scan_id: Any) -> str:
    """The channel-layer group of a scan's consumers."""
    return f"scan-progress.{scan_id}"


def results_url(scan_id: Any) -> str:
    return f"/scan/results/{scan_id}"


# --- What the stage tasks report -------------------------------------------------------------


def stage_started(scan_id: Any, stage: str, total: int, message: str = "") -> dict[str, Any] | None:
    """``stage`` begins with ``total`` units; the scan is running from its first stage's start."""
    return _update(scan_id, _start_ops(stage, total, message), force=True, creates=stage == STAGES[0])


def handover(scan_id: Any, ended: str, started: str, total: int, message: str = "") -> dict[str, Any] | None:
    """``ended`` finishes and ``started`` begins at the same moment, in one update (one push).
    ``ended`` has done all its units, unless a cancel was requested: then it was cut short."""
    return _update(scan_id, _end_ops(ended) + _start_ops(started, total, message), force=True)


def cancel_requested(scan_id: Any) -> dict[str, Any] | None:
    """A cancel was asked for: the stages that end from now on are shown ``cancelled``."""
    ops: list[Op] = [("setnx", "cancel_requested", _now()), ("set", "message", "Cancelling")]
    return _update(scan_id, ops, force=True)


def batch_advanced(
    scan_id: Any,
    stage: str,
    batch: int,
    done: int,
    last_symbol: str = "",
    cache_hits: int = 0,
    cache_misses: int = 0,
    cache_down: bool = False,
) -> dict[str, Any] | None:
    """Batch ``batch`` of ``stage`` has done ``done`` of its units (how far it got, not an
    increment). The stage counter grows only by what this adds above the batch's best report, so
    a batch run twice counts once; ``cache_hits`` and ``cache_misses`` (the lookups of the units
    this report covers) count only with the units they came with. ``cache_down``: the price
    cache could not be reached, the symbols went uncached."""
    ops: list[Op] = [("batch", stage, done, batch, cache_hits, cache_misses)]
    if last_symbol:
        ops.append(("set", f"{stage}.last", last_symbol))
    if cache_down:
        ops.append(("set", "cache_down", "1"))
    return _update(scan_id, ops, force=cache_down)


def advanced(
    scan_id: Any,
    stage: str,
    done: int,
    last_symbol: str = "",
    cache_hits: int = 0,
    cache_misses: int = 0,
    cache_down: bool = False,
) -> dict[str, Any] | None:
    """``done`` more units of ``stage`` finished (O(1): counters, no subtask is polled; never
    past the stage's total). Work split in batches that may run twice reports through
    ``batch_advanced``. ``cache_down``: the price cache could not be reached."""
    ops: list[Op] = [("add", stage, str(done))]
    if last_symbol:
        ops.append(("set", f"{stage}.last", last_symbol))
    if cache_hits or cache_misses:
        ops += [("incr", "cache_hits", str(cache_hits)), ("incr", "cache_misses", str(cache_misses))]
    if cache_down:
        ops.append(("set", "cache_down", "1"))
    return _update(scan_id, ops, force=cache_down)


def finished(
    scan_id: Any, status: str, message: str, scan: ScanRow | None = None, scanned: int = 0
) -> dict[str, Any] | None:
    """The terminal update; returns the final snapshot (None if the scan had already ended).

    With the finished ``scan`` row, whatever Redis lacks of it (stage times, the end, a cancel)
    is filled in from the row, and ``scanned`` (the symbols its batches accounted for) raises
    the scanning counter to at least that: the final snapshot agrees with the database.
    """
    if status not in TERMINAL:
        raise ValueError(f"finished() needs a terminal status, got {status!r}")
    ended = _now() if scan is None or scan.finished_at is None else _stamp(scan.finished_at)
    ops: list[Op] = [("set", "status", status), ("set", "ended", ended), ("set", "message", message)]
    if scan is not None:
        ops += [("setnx", field, value) for field, value in _row_fields(scan).items()]
        ops += [("max", "stage", str(_last_begun(scan))), ("max", "symbol_scanning.current", str(scanned))]
        if scan.cancel_requested:
            ops.append(("setnx", "cancel_requested", ended))
        if status == "completed":
            ops += [("fill", stage) for stage in STAGES]
    return _update(scan_id, ops, force=True, scan=scan, scanned=scanned)


def wire(snap: dict[str, Any]) -> dict[str, Any]:
    """A snapshot as consumers handle it: the text clients get (the snapshot plus ``"type"``:
    ``progress`` or ``terminal``), encoded once rather than once per client, and the few fields
    coalescing looks at (``seq``, ``status``, ``current_stage``, each stage's ``status``)."""
    kind = "terminal" if snap["status"] in TERMINAL else "progress"
    return {
        "seq": snap["seq"],
        "status": snap["status"],
        "current_stage": snap["current_stage"],
        "stages": {name: {"status": st["status"]} for name, st in snap["stages"].items()},
        "type": kind,
        "text": json.dumps({**snap, "type": kind}, separators=(",", ":")),
    }


# --- Reading ---------------------------------------------------------------------------------


def snapshot(scan_id: Any) -> dict[str, Any] | None:
    """The scan's snapshot as of now, or None when Redis holds no progress for it."""
    raw = main_redis().hgetall(_key(scan_id, "state"))
    return _build(scan_id, _decode(raw)) if raw else None


def current_snapshot(scan: Any) -> dict[str, Any]:
    """A ``scanner.models.Scan``'s snapshot: live from Redis, else the final one kept on the row,
    else one built from the row's own status and stage times.

    The row's end is recorded just before the terminal update reaches Redis: in between, the
    live state is shown with the row's status, never as running when the row says finished."""
    raw = main_redis().hgetall(_key(scan.id, "state"))
    if raw:
        state = _decode(raw)
        if scan.is_finished and state["status"] not in TERMINAL:
            state.update(status=str(scan.status), ended=_epoch(scan.finished_at))
        return _build(scan.id, state)
    if scan.progress:
        return dict(scan.progress)
    return _build(scan.id, _state_from_row(scan))


def learn_rates(total_symbols: int, stage_seconds: Mapping[str, float | None]) -> dict[str, float]:
    """After a completed scan: each stage's symbols per second, averaged half and half with
    what earlier scans measured. Returns the rates now learned."""
    if total_symbols <= 0:
        return learned_rates()
    rates = learned_rates()
    for stage, seconds in stage_seconds.items():
        if seconds:
            measured = total_symbols / seconds
            rates[stage] = 0.5 * (rates[stage] + measured) if stage in rates else measured
    key = f"{settings.TECHNIC_KEY_PREFIX}:progress:rates"
    pipe = main_redis().pipeline()
    pipe.hset(key, mapping={stage: f"{rate:.6g}" for stage, rate in rates.items()})
    pipe.expire(key, RATES_TTL_SECONDS)
    pipe.execute()
    _priors_read.clear()
    return rates


def learned_rates() -> dict[str, float]:
    raw = main_redis().hgetall(f"{settings.TECHNIC_KEY_PREFIX}:progress:rates")
    return {_text(k): float(_text(v)) for k, v in raw.items() if _text(k) in STAGES}


_priors_read: dict[str, tuple[float, dict[str, float]]] = {}


def _priors() -> dict[str, float]:
    """``learned_rates``, read again at most every ``RATES_REREAD_SECONDS`` by this process."""
    cached = _priors_read.get("rates")
    if cached is None or time.monotonic() - cached[0] > RATES_REREAD_SECONDS:
        cached = (time.monotonic(), learned_rates())
        _priors_read["rates"] = cached
    return cached[1]


def eta_accuracy(scan_id: Any, stage_ends: Mapping[str, float | None], scan_end: float) -> dict[str, Any]:
    """How far the pushed ETAs were from the real end of each stage and of the scan.

    For every snapshot pushed while the scan ran, the predicted end (its time plus its ETA)
    against the actual end: mean and largest absolute error in seconds, and the mean as a
    percentage of the actual duration from the first sample.
    """
    samples = [json.loads(s) for s in main_redis().lrange(_key(scan_id, "etas"), 0, -1)]
    overall = _errors([(t, t + eta, scan_end) for t, _, _, eta in samples])
    per_stage = {
        stage: _errors([(t, t + eta, end) for t, s, eta, _ in samples if s == stage])
        for stage, end in stage_ends.items()
        if end is not None
    }
    return {"overall": overall, "stages": {s: e for s, e in per_stage.items() if e["samples"]}}


def _errors(predictions: list[tuple[float, float, float]]) -> dict[str, Any]:
    if not predictions:
        return {"samples": 0}
    errors = [abs(predicted - actual) for _, predicted, actual in predictions]
    span = max(actual for _, _, actual in predictions) - min(t for t, _, _ in predictions)
    mean = statistics.fmean(errors)
    return {
        "samples": len(errors),
        "mean_abs_error_seconds": round(mean, 3),
        "max_abs_error_seconds": round(max(errors), 3),
        "mean_abs_error_pct": round(100.0 * mean / span, 1) if span > 0 else None,
    }


# --- Internals -------------------------------------------------------------------------------


def _now() -> str:
    return f"{time.time():.6f}"


def _stamp(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _start_ops(stage: str, total: int, message: str) -> list[Op]:
    now = _now()
    return [
        ("set", "status", "running"),
        ("setnx", "started", now),
        ("setnx", f"{stage}.started", now),
        ("set", f"{stage}.total", str(max(0, total))),
        ("max", "stage", str(STAGES.index(stage))),
        ("set", "message", message or stage.replace("_", " ").capitalize()),
    ]


def _end_ops(stage: str) -> list[Op]:
    return [("setnx", f"{stage}.ended", _now()), ("fill", stage)]


def _update(
    scan_id: Any, ops: list[Op], force: bool, creates: bool = False, scan: ScanRow | None = None, scanned: int = 0
) -> dict[str, Any] | None:
    """Apply ``ops`` atomically; push the new snapshot if forced or the throttle allows.
    Returns the snapshot, or None when the scan's progress had already reached its end.

    ``creates``: the update may start a scan's state from nothing (its first stage's start);
    any other update finding it missing rebuilds it from the database row first. ``scan`` and
    ``scanned``: the finished row and its count, for the terminal update.
    """
    client = main_redis()

    def apply(seed: str) -> Any:
        keys = (_key(scan_id, "state"), _key(scan_id, "push"), _key(scan_id, "batches"))
        args = (json.dumps(ops), TTL_SECONDS, "1" if force else "0", PUSH_INTERVAL_MS, seed)
        return client.eval(_UPDATE, len(keys), *keys, *args)

    answer = apply("{}" if creates else "")
    if answer == LOST:
        fields = _rebuild_fields(scan_id, scan, scanned)
        if fields is None:
            return None
        answer = apply(json.dumps(fields))
    if not answer:
        return None
    pushed, flat = answer
    snap = _build(scan_id, _decode(dict(zip(flat[::2], flat[1::2], strict=True))))
    if pushed:
        if snap["status"] == "running":
            _record_eta(client, scan_id, snap)
        if settings.TECHNIC_PROGRESS_PUSH:
            push.group_send(group_name(scan_id), {"type": "progress.snapshot", "message": wire(snap)})
    return snap


def _record_eta(client: Any, scan_id: Any, snap: dict[str, Any]) -> None:
    key = _key(scan_id, "etas")
    sample = json.dumps([snap["updated_at"], snap["current_stage"], snap["stage_eta"], snap["overall_eta"]])
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, sample)
    pipe.ltrim(key, -ETA_SAMPLES_KEPT, -1)
    pipe.expire(key, TTL_SECONDS)
    pipe.execute()


def _decode(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """The state hash as the tracker's state mapping."""
    flat = {_text(k): _text(v) for k, v in raw.items()}
    state: dict[str, Any] = {
        "seq": int(flat.get("seq", 0)),
        "status": flat.get("status", "pending"),
        "started": _float(flat.get("started")),
        "ended": _float(flat.get("ended")),
        "stage": int(flat.get("stage", -1)),
        "message": flat.get("message", ""),
        "cache_hits": int(flat.get("cache_hits", 0)),
        "cache_misses": int(flat.get("cache_misses", 0)),
        "cache_down": flat.get("cache_down") == "1",
        "cancel_requested": _float(flat.get("cancel_requested")),
        "stages": {},
    }
    for stage in STAGES:
        state["stages"][stage] = {
            "started": _float(flat.get(f"{stage}.started")),
            "ended": _float(flat.get(f"{stage}.ended")),
            "current": int(flat.get(f"{stage}.current", 0)),
            "total": int(flat.get(f"{stage}.total", 0)),
            "last": flat.get(f"{stage}.last", ""),
        }
    return state


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _build(scan_id: Any, state: dict[str, Any]) -> dict[str, Any]:
    index = state["stage"]
    stage = STAGES[index] if 0 <= index < len(STAGES) else None
    if state["status"] == "running" and stage in COUNTING_STAGES:
        st = state["stages"][stage]
        if st["ended"] is None and (st["current"] or st["total"]):
            done = min(st["current"], st["total"])
            what = f"Scanning {st['last']}" if stage == "symbol_scanning" and st["last"] else COUNTING_STAGES[stage]
            state["message"] = f"{what} ({done}/{st['total']})"
    snap = ProgressTracker.restore(str(scan_id), state, weights=stage_weights(), prior_rates=_priors()).snapshot()
    snap["updated_at"] = round(time.time(), 6)
    if snap["status"] in TERMINAL:
        snap["results_url"] = results_url(scan_id)
    return snap


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _units(scan: ScanRow, stage: str) -> int:
    return scan.total_symbols if stage in COUNTING_STAGES else 1


def _last_begun(scan: ScanRow) -> int:
    """Index of the last stage the row shows begun (-1: none)."""
    begun = [
        i
        for i, stage in enumerate(STAGES)
        if getattr(scan, f"{stage}_started_at") or getattr(scan, f"{stage}_ended_at")
    ]
    return begun[-1] if begun else -1


def _row_fields(scan: ScanRow) -> dict[str, str]:
    """The row's times as state fields: the scan's start, and each begun stage's start, end and
    total units."""
    fields = {"started": _stamp(scan.started_at)} if scan.started_at else {}
    for stage in STAGES:
        started, ended = getattr(scan, f"{stage}_started_at"), getattr(scan, f"{stage}_ended_at")
        if started is None and ended is None:
            continue
        fields[f"{stage}.total"] = str(_units(scan, stage))
        if started is not None:
            fields[f"{stage}.started"] = _stamp(started)
        if ended is not None:
            fields[f"{stage}.ended"] = _stamp(ended)
    return fields


def _rebuild_fields(scan_id: Any, finished: ScanRow | None, scanned: int) -> dict[str, str] | None:
    """Fields to rebuild a missing state with, from the scan's row; ``{}`` when this database
    has no such scan (nothing to rebuild from), None when the update must not apply (the scan
    has finished and this is not its terminal update, or its final snapshot is already kept).

    Stages that ended count all their units; a scanning stage under way counts the symbols
    with an outcome (``scanned`` for the terminal update); what a fetch stage under way had done
    is lost, so it counts from its batches' next reports. A cancel's time is not on the row: the
    rebuild takes it as now.
    """
    scan = finished or _row(scan_id)
    if scan is None:
        return {}
    if scan.is_finished and (finished is None or scan.progress):
        return None
    fields = _row_fields(scan)
    for stage in STAGES:
        if getattr(scan, f"{stage}_ended_at") is not None:
            fields[f"{stage}.current"] = str(_units(scan, stage))
    if scan.symbol_scanning_started_at is not None and scan.symbol_scanning_ended_at is None:
        done = scanned if finished is not None else _with_outcome(scan)
        fields["symbol_scanning.current"] = str(min(done, scan.total_symbols))
    fields["status"] = "running" if scan.started_at else "pending"
    fields["stage"] = str(_last_begun(scan))
    fields["seq"] = str(max(0, round((time.time() - scan.created_at.timestamp()) * 1e6)))
    if scan.cancel_requested:
        fields["cancel_requested"] = _now()
    if scan.started_at:  # a scan no worker began had no progress to lose
        logger.warning("scan %s: its progress was missing from Redis; rebuilt from the database", scan_id)
    return fields


def _with_outcome(scan: ScanRow) -> int:
    """How many of the scan's symbols have a result or a skip."""
    return _registered(_Rows.with_outcome)(scan.id)


def _row(scan_id: Any) -> ScanRow | None:
    try:
        key = uuid.UUID(str(scan_id))
    except ValueError:  # not a scan id (the progress of something else): nothing to read
        return None
    return _registered(_Rows.row)(key)


def _registered(read: Any) -> Any:
    if read is None:
        raise RuntimeError("progress.store reads scan rows through use_rows(), which no app has called")
    return read


def _state_from_row(scan: ScanRow) -> dict[str, Any]:
    """State from the database row alone (no counters of running stages): for a scan Redis
    knows nothing of."""
    stages = {}
    for stage in STAGES:
        started, ended = _epoch(getattr(scan, f"{stage}_started_at")), _epoch(getattr(scan, f"{stage}_ended_at"))
        units = _units(scan, stage)
        done = units if ended else 0
        stages[stage] = {"started": started, "ended": ended, "current": done, "total": units, "last": ""}
    return {
        "seq": 0,
        "status": str(scan.status),
        "started": _epoch(scan.started_at),
        "ended": _epoch(scan.finished_at),
        "stage": _last_begun(scan),
        "message": scan.error_message or ("Waiting for a worker" if str(scan.status) == "pending" else ""),
        "cache_hits": 0,
        "cache_misses": 0,
        "stages": stages,
    }
