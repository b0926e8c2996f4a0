"""Saved screens: reading a user's, the starter screens every new user gets, and what a saved
screen contributes to a scan's options."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from scanner.models import Screen

STARTER_SCREENS: tuple[dict[str, Any], ...] = (
    {
        "name": "Pullback in an uptrend",
        "description": "Above a rising 200-day average, pulled back below the 20-day with RSI cooled off.",
        "filter": "close > sma_200 and sma_50 > sma_200 and close < sma_20 and rsi_14 < 45",
        "rank_by": "trend_score",
        "order": "desc",
    },
    {
        "name": "52-week high breakout on volume",
        "description": "A new 52-week high that clears the last 20 bars on at least 1.5 times average volume.",
        "filter": "new_52w_high and breakout_20d and volume_ratio >= 1.5",
        "rank_by": "volume_ratio",
        "order": "desc",
    },
    {
        "name": "Oversold quality",
        "description": "Oversold (RSI under 30) while still above the 200-day average, in a calm stock.",
        "filter": "rsi_14 < 30 and close > sma_200 and vol_20d < 0.35",
        "rank_by": "rsi_14",
        "order": "asc",
    },
    {
        "name": "Relative strength leaders",
        "description": "The top fifth of the scan by relative strength, above their 50-day average.",
        "filter": "rs_rating >= 80 and close > sma_50",
        "rank_by": "rs_rating",
        "order": "desc",
    },
    {
        "name": "Weekly uptrend, daily dip",
        "description": "Weekly close above its 20-week average; the daily close crossed under its 20-day lately.",
        "filter": "weekly(close) > weekly(sma_20) and crossed_below(close, sma_20, 5)",
        "rank_by": "tech_rating",
        "order": "desc",
    },
)


def user_screens(user: Any) -> QuerySet[Screen]:
    return Screen.objects.filter(owner_id=user.pk).order_by("name", "id")


def user_screen(user: Any, screen_id: Any) -> Screen | None:
    """The saved screen if it exists and belongs to ``user``; None otherwise (the two look the same)."""
    return Screen.objects.filter(pk=screen_id, owner_id=user.pk).first()


def screen_options(screen: Screen) -> dict[str, Any]:
    """What the saved screen puts in a scan's start body: its options, filter, rank_by and order."""
    return {**screen.options, "filter": screen.filter, "rank_by": screen.rank_by, "order": screen.order}


def starter_screens_create(user: Any) -> int:
    """Give ``user`` the starter screens they lack (by name); returns how many were created."""
    have = set(Screen.objects.filter(owner_id=user.pk).values_list("name", flat=True))
    new = [Screen(owner_id=user.pk, **spec) for spec in STARTER_SCREENS if spec["name"] not in have]
    Screen.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)
