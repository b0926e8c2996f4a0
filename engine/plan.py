"""Long trade plans sized by risk: entry at the close, an ATR stop, a reward-to-risk target."""

from __future__ import annotations

import math
from dataclasses import dataclass

STOP_ATR_MULTIPLE = 2.0


@dataclass(frozen=True)
class TradePlan:
    entry: float | None
    stop: float | None
    target: float | None
    reward_risk: float | None
    position_size: int | None
    flags: tuple[str, ...]


def trade_plan(close: float, atr: float, account_size: float, risk_pct: float, target_rr: float) -> TradePlan:
    """A long plan: ``stop = close - 2*ATR``, ``target = close + target_rr * (close - stop)``.

    ``position_size`` is the whole number of shares whose loss at the stop is at most
    ``account_size * risk_pct``, capped by what the account can buy (flag ``position_capped``).
    When the stop would be at or below zero there is no valid long plan: every field is None
    and the flag ``no_trade_plan`` says so.
    """
    risk_per_share = STOP_ATR_MULTIPLE * atr
    if not (math.isfinite(risk_per_share) and 0 < risk_per_share < close):
        return TradePlan(None, None, None, None, None, ("no_trade_plan",))
    entry = close
    stop = entry - risk_per_share
    target = entry + target_rr * risk_per_share
    flags: list[str] = []
    by_risk = math.floor(account_size * risk_pct / risk_per_share)
    by_cash = math.floor(account_size / entry)
    size = min(by_risk, by_cash)
    if by_cash < by_risk:
        flags.append("position_capped")
    if size == 0:
        flags.append("position_too_small")
    reward_risk = (target - entry) / (entry - stop)
    return TradePlan(entry, stop, target, reward_risk, size, tuple(flags))
