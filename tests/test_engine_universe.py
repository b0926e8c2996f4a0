"""Choosing a scan's symbols: sectors, explicit symbols, stratified max_symbols."""

from __future__ import annotations

import pytest

from engine.config import ConfigError, ScanConfig
from engine.types import GICS_SECTORS, Instrument
from engine.universe import select_universe

UNIVERSE = [
    Instrument(f"{sector[:3].upper()}{n}", f"{sector} {n}", sector) for sector in GICS_SECTORS for n in range(5)
]


def test_no_sectors_means_every_sector_of_the_universe() -> None:
    chosen = select_universe(UNIVERSE, ScanConfig())
    assert len(chosen) == len(UNIVERSE)
    assert {i.sector for i in chosen} == set(GICS_SECTORS)


def test_sectors_filter_the_universe() -> None:
    chosen = select_universe(UNIVERSE, ScanConfig(sectors=("Energy", "Utilities")))
    assert {i.sector for i in chosen} == {"Energy", "Utilities"}
    assert len(chosen) == 10


def test_max_symbols_keeps_a_sample_spanning_every_sector() -> None:
    chosen = select_universe(UNIVERSE, ScanConfig(max_symbols=22))
    assert len(chosen) == 22
    assert {i.sector for i in chosen} == set(GICS_SECTORS)
    assert chosen == sorted(chosen, key=lambda i: i.symbol)
    assert chosen == select_universe(list(reversed(UNIVERSE)), ScanConfig(max_symbols=22))


def test_explicit_symbols_keep_their_order_without_duplicates() -> None:
    chosen = select_universe(UNIVERSE, ScanConfig(symbols=("UTI1", "ENE0", "UTI1")))
    assert [i.symbol for i in chosen] == ["UTI1", "ENE0"]


def test_an_unknown_sector_is_an_error_suggesting_the_nearest_names() -> None:
    with pytest.raises(ConfigError) as info:
        select_universe(UNIVERSE, ScanConfig(sectors=("Enrgy",)))
    assert info.value.field == "sectors"
    assert "Energy" in info.value.suggestions


def test_an_unknown_symbol_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        select_universe(UNIVERSE, ScanConfig(symbols=("ENE0", "NOPE")))
    assert info.value.field == "symbols"
    assert "NOPE" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_symbols": 0}, "max_symbols"),
        ({"min_tech_rating": 101}, "min_tech_rating"),
        ({"min_tech_rating": float("nan")}, "min_tech_rating"),
        ({"risk_pct": 5}, "risk_pct"),
        ({"lookback_days": 0}, "lookback_days"),
        ({"account_size": float("inf")}, "account_size"),
        ({"universe": "nasdaq"}, "universe"),
    ],
)
def test_invalid_configuration_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScanConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
