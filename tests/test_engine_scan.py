"""Scanning batches of real symbols: nothing disappears, ratings spread, plans hold, no look-ahead."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

import engine.scan as scan_module
from engine.config import ScanConfig
from engine.indicators import MIN_HISTORY
from engine.scan import ROW_FIELDS, SKIP_REASONS, scan_batch
from engine.types import GICS_SECTORS, Bars, Instrument

LAST_DAY = date(2018, 2, 7)
FULL = 1259


def windowed(bars: dict[str, Bars], as_of: date, lookback: int) -> dict[str, Bars]:
    out = {s: b.window(as_of, lookback) for s, b in bars.items()}
    return {s: b for s, b in out.items() if len(b)}


@pytest.fixture(scope="module")
def full_scan(real_bars: dict[str, Bars], real_instruments: list[Instrument], real_calendar: np.ndarray) -> Any:
    return scan_batch(
        real_instruments, windowed(real_bars, LAST_DAY, FULL), ScanConfig(lookback_days=FULL), LAST_DAY, real_calendar
    )


def test_every_requested_symbol_ends_in_the_results_or_the_skip_list_exactly_once(
    full_scan: Any, real_instruments: list[Instrument]
) -> None:
    names = [r["symbol"] for r in full_scan.rows] + [s.symbol for s in full_scan.skipped]
    assert sorted(names) == sorted(i.symbol for i in real_instruments)
    assert all(s.reason in SKIP_REASONS and s.detail for s in full_scan.skipped)


def test_symbols_with_less_than_a_year_of_bars_are_skipped_as_insufficient_history(full_scan: Any) -> None:
    short = {s.symbol for s in full_scan.skipped if s.reason == "insufficient_history"}
    assert {"APTV", "DWDP", "BHF", "BHGE", "DXC"} <= short
    assert all(str(MIN_HISTORY) in s.detail for s in full_scan.skipped if s.reason == "insufficient_history")


def test_rows_carry_every_contract_field(full_scan: Any) -> None:
    for row in full_scan.rows:
        assert tuple(row) == ROW_FIELDS
        assert row["as_of"] <= LAST_DAY.isoformat()


def test_flags_are_split_into_data_quality_and_risk_and_a_foreign_last_bar_is_flagged(
    real_bars: dict[str, Bars], real_instruments: list[Instrument], real_calendar: np.ndarray
) -> None:
    as_of = date(2017, 9, 14)
    out = scan_batch(real_instruments, windowed(real_bars, as_of, 500), ScanConfig(), as_of, real_calendar)
    rows = {r["symbol"]: r for r in out.rows}
    assert "suspect_last_bar:2017-09-14" in rows["MRK"]["quality_flags"]
    assert "no_alpha_model" in rows["MRK"]["risk_flags"]
    for row in out.rows:
        assert row["flags"] == row["quality_flags"] + row["risk_flags"]
        assert all(":" in f for f in row["quality_flags"]) and not any(":" in f for f in row["risk_flags"])


def test_all_eleven_sectors_are_scanned_when_none_are_chosen(full_scan: Any) -> None:
    assert {r["sector"] for r in full_scan.rows} == set(GICS_SECTORS)


# docs/tech-rating.md "Why it spreads": as of, rated, min, max, standard deviation, median.
DOCUMENTED_SPREAD = (
    (date(2014, 6, 30), 481, 3.0, 96.6, 22.8, 77.4),
    (date(2016, 11, 30), 495, 3.0, 95.4, 28.8, 65.7),
    (date(2018, 2, 7), 499, 2.0, 90.7, 21.6, 26.9),
)


def test_tech_rating_spreads_across_the_range_as_documented(
    real_bars: dict[str, Bars], real_instruments: list[Instrument], real_calendar: np.ndarray
) -> None:
    for as_of, rated, low, high, std, median in DOCUMENTED_SPREAD:
        out = scan_batch(real_instruments, windowed(real_bars, as_of, 500), ScanConfig(), as_of, real_calendar)
        ratings = np.array([r["tech_rating"] for r in out.rows])
        assert ratings.min() >= 0 and ratings.max() <= 100
        measured = (len(ratings), *(round(float(x), 1) for x in (ratings.min(), ratings.max(), ratings.std())))
        assert measured == (rated, low, high, std), as_of
        assert round(float(np.median(ratings)), 1) == median, as_of


def test_a_market_wide_crash_rates_nearly_everything_low_because_the_rating_is_absolute(
    real_bars: dict[str, Bars], real_instruments: list[Instrument], real_calendar: np.ndarray
) -> None:
    as_of = date(2015, 8, 25)
    out = scan_batch(real_instruments, windowed(real_bars, as_of, 500), ScanConfig(), as_of, real_calendar)
    ratings = np.array([r["tech_rating"] for r in out.rows])
    assert np.median(ratings) < 20


def test_signals_follow_the_rating(full_scan: Any) -> None:
    order = ["strong_sell", "sell", "hold", "buy", "strong_buy"]
    rows = sorted(full_scan.rows, key=lambda r: r["tech_rating"])
    ranks = [order.index(r["signal"]) for r in rows]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) >= 4


def test_every_long_plan_has_stop_below_entry_below_target_and_a_matching_reward_risk(full_scan: Any) -> None:
    planned = [r for r in full_scan.rows if r["entry"] is not None]
    assert len(planned) == len(full_scan.rows)
    for r in planned:
        assert r["stop"] < r["entry"] < r["target"]
        assert r["reward_risk"] == pytest.approx((r["target"] - r["entry"]) / (r["entry"] - r["stop"]))
        assert r["reward_risk"] == pytest.approx(2.0)
        assert r["position_size"] * (r["entry"] - r["stop"]) <= 100_000 * 0.01 + 1e-6


def test_known_bad_bars_in_the_window_are_flagged_on_that_symbol(
    full_scan: Any, anomalies: list[dict[str, str]]
) -> None:
    flags = {r["symbol"]: set(r["flags"]) for r in full_scan.rows}
    checked = 0
    for a in anomalies:
        if a["issue"] in ("suspect_bad_bar_2017-09-14", "suspect_one_bar_spike") and a["symbol"] in flags:
            assert f"one_bar_spike:{a['date']}" in flags[a["symbol"]], a
            checked += 1
    assert checked >= 30


def test_alpha_is_left_empty_and_flagged_while_there_is_no_model(full_scan: Any) -> None:
    for r in full_scan.rows:
        assert r["alpha_5d"] is None and r["alpha_10d"] is None
        assert "no_alpha_model" in r["flags"]


def test_results_for_an_as_of_do_not_change_when_later_bars_are_removed(
    real_bars: dict[str, Bars], real_instruments: list[Instrument], real_calendar: np.ndarray
) -> None:
    as_of = date(2016, 6, 30)
    cut = np.datetime64(as_of, "D")
    truncated = {s: b.window(as_of, 10_000) for s, b in real_bars.items()}
    truncated = {s: b for s, b in truncated.items() if len(b)}
    config = ScanConfig(as_of=as_of)
    with_future = scan_batch(real_instruments, windowed(real_bars, as_of, 500), config, as_of, real_calendar)
    without = scan_batch(
        real_instruments, windowed(truncated, as_of, 500), config, as_of, real_calendar[real_calendar <= cut]
    )
    assert with_future.rows == without.rows
    assert with_future.skipped == without.skipped


def test_a_symbol_scans_the_same_alone_as_in_a_large_batch(
    full_scan: Any, real_bars: dict[str, Bars], real_instruments: list[Instrument], real_calendar: np.ndarray
) -> None:
    by_symbol = {r["symbol"]: r for r in full_scan.rows}
    for inst in [i for i in real_instruments if i.symbol in ("AAPL", "XOM", "ZTS", "LNT")]:
        alone = scan_batch(
            [inst], windowed(real_bars, LAST_DAY, FULL), ScanConfig(lookback_days=FULL), LAST_DAY, real_calendar
        )
        assert alone.rows == [by_symbol[inst.symbol]]


def test_price_liquidity_and_rating_floors_skip_with_their_reason(
    real_bars: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    bars = windowed(real_bars, LAST_DAY, 500)
    insts = real_instruments[:60]
    cases = [
        (ScanConfig(min_price=1e6), "below_min_price"),
        (ScanConfig(min_dollar_volume=1e13), "illiquid"),
        (ScanConfig(min_tech_rating=100), "below_min_rating"),
    ]
    for config, reason in cases:
        out = scan_batch(insts, bars, config, LAST_DAY)
        assert not out.rows
        assert {s.reason for s in out.skipped} <= {reason, "insufficient_history"}
        assert sum(s.reason == reason for s in out.skipped) >= 55


def test_a_symbol_without_bars_is_skipped_as_no_data(real_bars: dict[str, Bars]) -> None:
    out = scan_batch([Instrument("GHOST", "Ghost Inc", "Energy")], {}, ScanConfig(), LAST_DAY)
    assert [(s.symbol, s.reason) for s in out.skipped] == [("GHOST", "no_data")]


def test_a_symbol_with_a_non_positive_price_is_skipped_as_bad_data(real_bars: dict[str, Bars]) -> None:
    b = real_bars["AAPL"].window(LAST_DAY, 500)
    close = b.close.copy()
    close[100] = 0.0
    broken = Bars(b.dates, b.open, b.high, b.low, close, b.volume)
    out = scan_batch([Instrument("AAPL", "Apple", "Information Technology")], {"AAPL": broken}, ScanConfig(), LAST_DAY)
    assert [s.reason for s in out.skipped] == ["bad_data"]
    assert str(b.dates[100]) in out.skipped[0].detail


def test_a_failure_inside_the_engine_isolates_that_symbol_as_error(
    monkeypatch: pytest.MonkeyPatch, real_bars: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    insts = [i for i in real_instruments if i.symbol in ("AAPL", "MSFT", "XOM")]
    real_compute = scan_module.compute_indicators
    msft_first_close = real_bars["MSFT"].window(LAST_DAY, 500).close[0]

    def exploding(panel: Any) -> Any:
        if np.any(panel.close[:, 0] == msft_first_close):
            raise RuntimeError("boom")
        return real_compute(panel)

    monkeypatch.setattr(scan_module, "compute_indicators", exploding)
    out = scan_batch(insts, windowed(real_bars, LAST_DAY, 500), ScanConfig(), LAST_DAY)
    assert sorted(r["symbol"] for r in out.rows) == ["AAPL", "XOM"]
    assert [(s.symbol, s.reason) for s in out.skipped] == [("MSFT", "error")]


def test_a_stop_request_skips_the_rest_as_cancelled_and_keeps_what_was_done(
    real_bars: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    calls = {"n": 0}

    def stop_after_first_chunk() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    out = scan_batch(
        real_instruments, windowed(real_bars, LAST_DAY, 500), ScanConfig(), LAST_DAY, should_stop=stop_after_first_chunk
    )
    cancelled = [s for s in out.skipped if s.reason == "cancelled"]
    assert len(out.rows) > 0 and len(cancelled) > 300
    assert len(out.rows) + len(out.skipped) == len(real_instruments)


def test_a_failure_midway_through_a_chunk_records_every_symbol_once(
    monkeypatch: pytest.MonkeyPatch, real_bars: dict[str, Bars], real_instruments: list[Instrument]
) -> None:
    insts = [i for i in real_instruments if i.symbol in ("AAPL", "MSFT", "XOM")]
    bars = windowed(real_bars, LAST_DAY, 500)
    real_plan = scan_module.trade_plan
    msft_close = float(bars["MSFT"].close[-1])

    def failing_for_msft(close: float, *args: Any) -> Any:
        if close == msft_close:
            raise RuntimeError("boom")
        return real_plan(close, *args)

    monkeypatch.setattr(scan_module, "trade_plan", failing_for_msft)
    out = scan_batch(insts, bars, ScanConfig(), LAST_DAY)
    assert sorted(r["symbol"] for r in out.rows) == ["AAPL", "XOM"]
    assert [(s.symbol, s.reason) for s in out.skipped] == [("MSFT", "error")]
