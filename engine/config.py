"""Scan configuration: plain, validated, immutable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from engine.errors import ConfigError
from engine.screens.screen import Screen, screen_of

__all__ = ["MAX_LOOKBACK_DAYS", "RANGES", "ConfigError", "ScanConfig"]

MAX_LOOKBACK_DAYS = 5000
# The allowed range of every numeric option, inclusive (the API's schema shows the same).
RANGES: dict[str, tuple[float, float]] = {
    "max_symbols": (1, 20_000),
    "min_tech_rating": (0.0, 100.0),
    "lookback_days": (1, MAX_LOOKBACK_DAYS),
    "account_size": (1.0, 1e12),
    "risk_pct": (1e-6, 0.2),
    "target_rr": (0.1, 20.0),
    "min_price": (0.0, 1e6),
    "min_dollar_volume": (0.0, 1e13),
}


@dataclass(frozen=True)
class ScanConfig:
    """What to scan and how to plan trades.

    ``lookback_days`` counts trading days (bars) of history ending at ``as_of``; ``as_of=None``
    means the provider's latest market date. ``risk_pct`` is a fraction of ``account_size``
    risked per trade (0.01 = 1%). ``filter``, ``rank_by`` and ``order`` are the screen
    (docs/screens.md): empty filter matches every symbol, empty rank_by keeps the default ranking.
    """

    universe: str = "default"
    symbols: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ()
    max_symbols: int | None = None
    min_tech_rating: float = 0.0
    lookback_days: int = 500
    as_of: date | None = None
    account_size: float = 100_000.0
    risk_pct: float = 0.01
    target_rr: float = 2.0
    min_price: float = 5.0
    min_dollar_volume: float = 1_000_000.0
    filter: str = ""
    rank_by: str = ""
    order: str = "desc"

    def __post_init__(self) -> None:
        if self.universe != "default":
            raise ConfigError("universe", f"unknown universe {self.universe!r}", ["default"])
        low, high = RANGES["max_symbols"]
        if self.max_symbols is not None and not low <= self.max_symbols <= high:
            raise ConfigError(
                "max_symbols", f"max_symbols must be between {low:g} and {high:g}, got {self.max_symbols}"
            )
        low, high = RANGES["lookback_days"]
        if not low <= self.lookback_days <= high:
            raise ConfigError("lookback_days", f"lookback_days must be between {low:g} and {high:g}")
        for name in ("min_tech_rating", "account_size", "risk_pct", "target_rr", "min_price", "min_dollar_volume"):
            _check_range(name, getattr(self, name), *RANGES[name])
        self.screen  # noqa: B018 - parses and checks the screen: raises ScreenError

    @property
    def screen(self) -> Screen | None:
        """The parsed screen (None without filter and rank_by); parsing is cached."""
        return screen_of(self.filter, self.rank_by, self.order)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["symbols"] = list(self.symbols)
        data["sectors"] = list(self.sectors)
        data["as_of"] = self.as_of.isoformat() if self.as_of else None
        return data


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(name, f"{name} must be between {low:g} and {high:g}, got {value:g}")
