"""Long trade plans: ordering of prices, reward/risk and risk-based sizing."""

from __future__ import annotations

import math

import pytest

from engine.plan import trade_plan


def test_a_long_plan_has_stop_below_entry_below_target_and_the_asked_reward_risk() -> None:
    plan = trade_plan(close=100.0, atr=2.5, account_size=100_000, risk_pct=0.01, target_rr=2.0)
    assert plan.stop is not None and plan.entry is not None and plan.target is not None
    assert plan.stop < plan.entry < plan.target
    assert (plan.entry, plan.stop, plan.target) == (100.0, 95.0, 110.0)
    assert plan.reward_risk == pytest.approx((plan.target - plan.entry) / (plan.entry - plan.stop))
    assert plan.reward_risk == pytest.approx(2.0)
    assert plan.position_size == 200  # $1,000 risk / $5 per share
    assert plan.flags == ()


def test_position_size_is_capped_by_the_account_and_says_so() -> None:
    plan = trade_plan(close=100.0, atr=0.05, account_size=10_000, risk_pct=0.02, target_rr=3.0)
    assert plan.position_size == 100
    assert "position_capped" in plan.flags


def test_a_position_too_small_for_one_share_is_flagged_not_hidden() -> None:
    plan = trade_plan(close=900.0, atr=50.0, account_size=1_000, risk_pct=0.01, target_rr=2.0)
    assert plan.position_size == 0
    assert "position_too_small" in plan.flags


@pytest.mark.parametrize("atr", [60.0, math.nan, 0.0])
def test_no_valid_stop_means_no_plan_rather_than_a_made_up_one(atr: float) -> None:
    plan = trade_plan(close=100.0, atr=atr, account_size=100_000, risk_pct=0.01, target_rr=2.0)
    assert plan.entry is None and plan.stop is None and plan.position_size is None
    assert plan.flags == ("no_trade_plan",)
