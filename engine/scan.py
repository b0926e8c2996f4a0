"""Scanning a batch of symbols: eligibility, validation, indicators, scores and plans.

Every instrument passed in ends either as a result row or as a skip with a reason code;
nothing disappears. Work is done in chunks of ``CHUNK_SIZE`` symbols laid out as a panel,
so memory stays small whatever the batch size, and ``should_stop`` is checked between chunks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from engine.alpha import AlphaFit, features_at_last, ranking_score
from engine.config import ScanConfig
from engine.indicators import MIN_HISTORY, IndicatorSet, compute_indicators
from engine.panel import Panel, build_panel
from engine.plan import trade_plan
from engine.quality import validate_panel
from engine.scoring import WEIGHTS, Scores, score
from engine.screens.screen import Screen, evaluate_chunk, rank_value
from engine.screens.series import Benchmark, Source
from engine.types import Bars, Instrument

logger = logging.getLogger(__name__)

CHUNK_SIZE = 128
STALE_BUSINESS_DAYS = 5
SKIP_REASONS = (
    "no_data",
    "insufficient_history",
    "below_min_price",
    "illiquid",
    "bad_data",
    "below_min_rating",
    "not_matched",
    "error",
    "cancelled",
)
INDICATOR_FIELDS = (
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "rsi_14",
    "atr_14", "bb_upper", "bb_middle", "bb_lower", "adx_14", "obv", "ret_1d", "ret_5d", "ret_21d",
    "vol_20d", "avg_volume_20", "dollar_volume_20", "pct_from_52w_high", "pct_from_52w_low",
)  # fmt: skip
ROW_FIELDS = (
    "symbol", "name", "sector", "as_of", "close", "tech_rating", "signal", *INDICATOR_FIELDS, "subscores",
    "alpha_5d", "alpha_10d", "entry", "stop", "target", "reward_risk", "position_size", "flags",
    "quality_flags", "risk_flags", "screen",
)  # fmt: skip


@dataclass(frozen=True)
class Skip:
    symbol: str
    reason: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"symbol": self.symbol, "reason": self.reason, "detail": self.detail}


@dataclass
class BatchOutput:
    """Rows and skips; ``strengths``: each eligible symbol's relative strength score, kept only
    when the screen uses ``rs_rating`` (finalization ranks them across the scan)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    strengths: dict[str, float | None] = field(default_factory=dict)


ProgressCallback = Callable[[int, str], None]


def scan_batch(
    instruments: Sequence[Instrument],
    bars: Mapping[str, Bars],
    config: ScanConfig,
    as_of: date,
    calendar: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    alpha: AlphaFit | None = None,
    benchmark: Benchmark | None = None,
) -> BatchOutput:
    """Scan ``instruments`` whose windowed bars (ending on or before ``as_of``) are in ``bars``.

    ``on_progress(done, last_symbol)`` is called after each chunk with the number of
    instruments accounted for so far. When ``should_stop()`` turns true, the instruments not
    yet scanned are skipped as ``cancelled``. ``alpha`` (a model whose cut-off is on or before
    ``as_of``) fills ``alpha_5d``/``alpha_10d``; without one they are empty and flagged
    ``no_alpha_model``. Deterministic; a row depends only on its own bars (and the model).
    Raises ValueError for a model whose cut-off is after ``as_of`` (it has seen later data).
    """
    if alpha is not None and alpha.data_cutoff > as_of:
        raise ValueError(
            f"the alpha model with cut-off {alpha.data_cutoff.isoformat()} cannot score as_of {as_of.isoformat()}"
        )
    out = BatchOutput()
    done = 0
    eligible: list[tuple[Instrument, Bars]] = []
    for inst in instruments:
        b = bars.get(inst.symbol)
        if b is None or len(b) == 0:
            out.skipped.append(Skip(inst.symbol, "no_data", f"no bars on or before {as_of.isoformat()}"))
        elif len(b) < MIN_HISTORY:
            out.skipped.append(Skip(inst.symbol, "insufficient_history", f"{len(b)} bars, {MIN_HISTORY} needed"))
        else:
            eligible.append((inst, b))
            continue
        done += 1
    for start in range(0, len(eligible), CHUNK_SIZE):
        chunk = eligible[start : start + CHUNK_SIZE]
        if should_stop is not None and should_stop():
            out.skipped.extend(
                Skip(i.symbol, "cancelled", "scan cancelled before this symbol") for i, _ in eligible[start:]
            )
            break
        _scan_chunk(chunk, config, as_of, calendar, out, alpha, benchmark)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, chunk[-1][0].symbol)
    return out


def _scan_chunk(
    chunk: Sequence[tuple[Instrument, Bars]],
    config: ScanConfig,
    as_of: date,
    calendar: np.ndarray | None,
    out: BatchOutput,
    alpha: AlphaFit | None = None,
    benchmark: Benchmark | None = None,
) -> None:
    # The chunk's outcomes are merged only when the whole chunk succeeded, so retrying its
    # symbols one by one after a failure cannot record any of them twice.
    chunk_out = BatchOutput()
    try:
        _scan_panel(chunk, config, as_of, calendar, chunk_out, alpha, benchmark)
    except Exception:
        if len(chunk) == 1:
            inst = chunk[0][0]
            logger.exception("scanning %s failed", inst.symbol)
            out.skipped.append(Skip(inst.symbol, "error", "internal error while scanning; see the worker log"))
            return
        logger.exception("scanning a chunk of %d symbols failed; retrying them one by one", len(chunk))
        for item in chunk:
            _scan_chunk([item], config, as_of, calendar, out, alpha, benchmark)
        return
    out.rows.extend(chunk_out.rows)
    out.skipped.extend(chunk_out.skipped)
    out.strengths.update(chunk_out.strengths)


def _scan_panel(
    chunk: Sequence[tuple[Instrument, Bars]],
    config: ScanConfig,
    as_of: date,
    calendar: np.ndarray | None,
    out: BatchOutput,
    alpha: AlphaFit | None,
    benchmark: Benchmark | None,
) -> None:
    panel = build_panel([b for _, b in chunk])
    quality = validate_panel(panel, calendar)
    ind = compute_indicators(panel)
    scores = score(ind)
    alphas = _alphas(alpha, panel, [inst.sector for inst, _ in chunk])
    screen = config.screen
    screened = evaluate_chunk(screen, _source(panel, ind, scores, alphas, benchmark)) if screen else None
    last_dates = panel.dates[panel.rows, panel.lengths - 1]
    stale = np.busday_count(last_dates, np.datetime64(as_of, "D")) > STALE_BUSINESS_DAYS
    for i, (inst, _) in enumerate(chunk):
        symbol = inst.symbol
        ineligible = _ineligible(symbol, i, quality.bad[i], quality.bad_detail[i], ind, scores, config)
        if ineligible is not None:
            out.skipped.append(ineligible)
            continue
        if screened is not None and screened.strength is not None:
            out.strengths[symbol] = _number(screened.strength[i])
        if float(scores.tech_rating[i]) < config.min_tech_rating:
            detail = f"tech_rating {scores.tech_rating[i]:.1f} < min_tech_rating {config.min_tech_rating:g}"
            out.skipped.append(Skip(symbol, "below_min_rating", detail))
        elif screened is not None and screened.matched[i] != 1.0:
            out.skipped.append(Skip(symbol, "not_matched", screened.failure(i)))
        else:
            quality_flags = list(quality.flags[i])
            if stale[i]:
                quality_flags.append(f"stale:{last_dates[i]}")
            out.rows.append(
                _row(
                    inst,
                    i,
                    ind,
                    scores.tech_rating[i],
                    scores.signal[i],
                    scores.subscores,
                    last_dates[i],
                    quality_flags,
                    config,
                    alphas[i],
                    screened.values(i) if screened is not None else {},
                )
            )


def _ineligible(
    symbol: str, i: int, bad: bool, bad_detail: str | None, ind: IndicatorSet, scores: Scores, config: ScanConfig
) -> Skip | None:
    """Why row ``i`` is not eligible (bad data, undefined indicators, a price or liquidity floor)."""
    close = float(ind.close[i])
    if bad:
        return Skip(symbol, "bad_data", bad_detail or "invalid bar values")
    if not math.isfinite(float(scores.tech_rating[i])):
        undefined = sorted(name for name, z in scores.z.items() if not math.isfinite(float(z[i])))
        return Skip(symbol, "bad_data", f"indicators undefined ({', '.join(undefined)}); flat or empty prices?")
    if close < config.min_price:
        return Skip(symbol, "below_min_price", f"close {close:.2f} < min_price {config.min_price:g}")
    if float(ind.dollar_volume_20[i]) < config.min_dollar_volume:
        return Skip(
            symbol,
            "illiquid",
            f"20-day dollar volume {ind.dollar_volume_20[i]:,.0f} < min_dollar_volume {config.min_dollar_volume:,.0f}",
        )
    return None


def _source(
    panel: Panel, ind: IndicatorSet, scores: Scores, alphas: Sequence[Alphas], benchmark: Benchmark | None
) -> Source:
    """The screen's fields over the chunk: on the last bar, the very values of the rows."""
    last: dict[str, np.ndarray] = {name: getattr(ind, name) for name in (*INDICATOR_FIELDS, "close", "volume_ratio")}
    last["tech_rating"] = scores.tech_rating
    last.update({f"{name}_score": scores.subscores[name] for name in WEIGHTS})
    for name in ("alpha_5d", "alpha_10d"):
        last[name] = np.array([np.nan if getattr(a, name) is None else getattr(a, name) for a in alphas])
    return Source(panel, last, benchmark)


def _row(
    inst: Instrument,
    i: int,
    ind: IndicatorSet,
    rating: float,
    signal: str,
    subscores: Mapping[str, np.ndarray],
    last_date: np.datetime64,
    quality_flags: list[str],
    config: ScanConfig,
    alpha: Alphas,
    screen_values: dict[str, Any],
) -> dict[str, Any]:
    """The result row; ``flags`` is ``quality_flags`` (the data's, ``kind:date``) then
    ``risk_flags`` (the setup's and the plan's, and why an alpha is empty)."""
    values = {name: _number(getattr(ind, name)[i]) for name in INDICATOR_FIELDS}
    flags: list[str] = []
    rsi, vol = values["rsi_14"], values["vol_20d"]
    if rsi is not None and rsi >= 70:
        flags.append("overbought")
    elif rsi is not None and rsi <= 30:
        flags.append("oversold")
    if vol is not None and vol >= 0.6:
        flags.append("high_volatility")
    plan = trade_plan(float(ind.close[i]), float(ind.atr_14[i]), config.account_size, config.risk_pct, config.target_rr)
    flags.extend(plan.flags)
    if alpha.flag is not None:
        flags.append(alpha.flag)
    return {
        "symbol": inst.symbol,
        "name": inst.name,
        "sector": inst.sector,
        "as_of": str(last_date),
        "close": float(ind.close[i]),
        "tech_rating": float(rating),
        "signal": signal,
        **values,
        "subscores": {name: float(subscores[name][i]) for name in WEIGHTS},
        "alpha_5d": alpha.alpha_5d,
        "alpha_10d": alpha.alpha_10d,
        "entry": plan.entry,
        "stop": plan.stop,
        "target": plan.target,
        "reward_risk": plan.reward_risk,
        "position_size": plan.position_size,
        "flags": [*quality_flags, *flags],
        "quality_flags": quality_flags,
        "risk_flags": flags,
        "screen": {"values": screen_values, "rank": None},
    }


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Alphas:
    """One row's alpha fields and the flag explaining empty ones."""

    alpha_5d: float | None
    alpha_10d: float | None
    flag: str | None


def _alphas(alpha: AlphaFit | None, panel: Panel, sectors: Sequence[str]) -> list[Alphas]:
    if alpha is None:
        return [Alphas(None, None, "no_alpha_model")] * len(sectors)
    predicted = alpha.predict(features_at_last(panel), sectors)
    known = set(alpha.sectors)
    out = []
    for i, sector in enumerate(sectors):
        values = {h: _number(predicted[h][i]) for h in (5, 10)}
        flag = None
        if values[5] is None or values[10] is None:
            flag = "alpha_undefined" if sector in known else "alpha_unknown_sector"
        out.append(Alphas(values[5], values[10], flag))
    return out


def rank_rows(
    rows: Sequence[dict[str, Any]],
    blend: Mapping[str, Mapping[str, float]] | None = None,
    screen: Screen | None = None,
) -> list[dict[str, Any]]:
    """Rows ordered best first, each with ``screen.rank`` its place (1 is first).

    With the screen's ``rank_by``: by its value in ``order`` (undefined values last); ties, and
    every row without one, by ranking score descending (the TechRating plus the alpha blend of
    ``blend``, see ``engine.alpha.ranking_score``; without a blend the TechRating alone), then
    TechRating descending, then symbol. Returns new row dicts; ``rows`` are not modified."""
    sign = -1.0 if screen is None or screen.order == "desc" else 1.0

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        value = rank_value(screen, r)
        return (
            value is None,
            sign * value if value is not None else 0.0,
            -ranking_score(r, blend),
            -r["tech_rating"],
            r["symbol"],
        )

    ranked = sorted(rows, key=key)
    return [{**r, "screen": {**(r.get("screen") or {"values": {}}), "rank": i}} for i, r in enumerate(ranked, 1)]
