"""Scan configuration: plain, validated, immutable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

MAX_LOOKBACK_DAYS = 5000


class ConfigError(ValueError):
    """A configuration value is invalid. ``field`` names it; the message is one line."""

    def __init__(self, field_name: str, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.field = field_name
        self.suggestions = suggestions or []


@dataclass(frozen=True)
class ScanConfig:
    """What to scan and how to plan trades.

    ``lookback_days`` counts trading days (bars) of history ending at ``as_of``; ``as_of=None``
    means the provider's latest market date. ``risk_pct`` is a fraction of ``account_size``
    risked per trade (0.01 = 1%).
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

    def __post_init__(self) -> None:
        if self.universe != "default":
            raise ConfigError("universe", f"unknown universe {self.universe!r}", ["default"])
        if self.max_symbols is not None and not 1 <= self.max_symbols <= 20_000:
            raise ConfigError("max_symbols", f"max_symbols must be between 1 and 20000, got {self.max_symbols}")
        _check_range("min_tech_rating", self.min_tech_rating, 0.0, 100.0)
        if not 1 <= self.lookback_days <= MAX_LOOKBACK_DAYS:
            raise ConfigError("lookback_days", f"lookback_days must be between 1 and {MAX_LOOKBACK_DAYS}")
        _check_range("account_size", self.account_size, 1.0, 1e12)
        _check_range("risk_pct", self.risk_pct, 1e-6, 0.2)
        _check_range("target_rr", self.target_rr, 0.1, 20.0)
        _check_range("min_price", self.min_price, 0.0, 1e6)
        _check_range("min_dollar_volume", self.min_dollar_volume, 0.0, 1e13)

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
