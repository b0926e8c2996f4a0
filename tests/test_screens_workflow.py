"""Screens on the workers (a real redis-server and real Celery workers, the real 505 symbols):
a filtered scan keeps exactly the rows the same filter keeps when applied by hand to the
unfiltered scan, whatever the batch size; every symbol is accounted for; rs_rating is ranked
across every batch at finalization; the scan records its screen's text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from engine.config import ScanConfig
from engine.screens.screen import rs_ratings
from market.sources import DataSource, provider_for
from progress.tracker import ProgressTracker
from scanner.models import Scan, ScanResult, ScanSkip, ScanStrength
from scanner.runner import run_scan
from scanner.selectors import scan_report
from scanner.services import scan_create
from tests.support.processes import Workers
from tests.support.waits import wait_finished

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FILTER = "close > sma_50 and rsi_14 < 70 and highest(high, 20) < close * 1.08 and weekly(close) > weekly(sma_20)"


@pytest.fixture
def source(market_dir: Path) -> DataSource:
    return DataSource("parquet", str(market_dir / "prices.parquet"), str(market_dir / "constituents.csv"))


def finished(config: ScanConfig, source: DataSource, batch_size: int) -> Scan:
    scan = wait_finished(scan_create(owner=None, config=config, source=source, batch_size=batch_size).id, 180)
    assert scan.status == "completed", scan.error_message
    return scan


def accounted(scan: Scan) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, str]]]:
    rows = {r.symbol: r.row for r in ScanResult.objects.filter(scan=scan)}
    skips = {s.symbol: (s.reason, s.detail) for s in ScanSkip.objects.filter(scan=scan)}
    assert not rows.keys() & skips.keys()
    assert sorted([*rows, *skips]) == sorted(symbol for symbol, _, _ in scan.universe)
    assert (scan.metrics["results"], scan.metrics["skipped"]) == (len(rows), len(skips))
    return rows, skips


def by_hand(row: dict[str, Any]) -> bool:
    """FILTER applied to a row of the plain scan (its screen values come from the filtered one)."""
    return bool(row["close"] > row["sma_50"] and row["rsi_14"] < 70)


def test_a_filtered_scan_keeps_what_the_filter_keeps_by_hand_and_accounts_for_every_symbol(
    workers: Workers, source: DataSource
) -> None:
    plain = finished(ScanConfig(), source, 60)
    plain_rows, _ = accounted(plain)
    config = ScanConfig(filter=FILTER, rank_by="change(close, 21)", order="asc")
    filtered = finished(config, source, 60)
    rows, skips = accounted(filtered)
    assert rows and any(reason == "not_matched" for reason, _ in skips.values())
    assert filtered.config["filter"] == FILTER and filtered.metrics["screen"]["filter"] == FILTER
    for symbol, row in rows.items():
        values = row["screen"]["values"]
        assert values["close"] == plain_rows[symbol]["close"] and values["rsi_14"] == plain_rows[symbol]["rsi_14"]
        assert by_hand(plain_rows[symbol])
        assert values["highest(high, 20)"] < values["close"] * 1.08
        assert values["weekly(close)"] > values["weekly(sma_20)"]
    for symbol, (reason, detail) in skips.items():
        if reason == "not_matched":
            assert symbol in plain_rows and ("is false" in detail or "is undefined" in detail)
        else:  # the same eligibility as the plain scan
            assert symbol not in plain_rows
    # The ranking: change(close, 21) ascending, ranks 1..N.
    report = scan_report(filtered)
    ranked = [r["screen"]["values"]["change(close, 21)"] for r in report.rows]
    assert ranked == sorted(ranked) and [r["screen"]["rank"] for r in report.rows] == list(range(1, len(ranked) + 1))
    # The in-process engine gives the same rows.
    local = run_scan(config, provider_for(source), ProgressTracker("local"))
    assert [r["symbol"] for r in local.rows] == [r["symbol"] for r in report.rows]
    assert local.rows == report.rows


def test_rs_rating_is_ranked_across_every_batch_at_finalization_whatever_the_batch_size(
    workers: Workers, source: DataSource
) -> None:
    config = ScanConfig(filter="rs_rating >= 80 and close > sma_50", rank_by="rs_rating")
    small, large = finished(config, source, 23), finished(config, source, 600)
    outcomes = []
    for scan in (small, large):
        rows, skips = accounted(scan)
        strengths = dict(ScanStrength.objects.filter(scan=scan).values_list("symbol", "score"))
        eligible = [s for s, (reason, _) in skips.items() if reason == "not_matched"] + list(rows)
        assert sorted(strengths) == sorted(eligible)  # every eligible symbol, from every batch
        ratings = rs_ratings(strengths)
        for symbol, row in rows.items():
            rating = ratings[symbol]
            assert rating is not None and rating >= 80
            assert row["screen"]["values"]["rs_rating"] == rating
            assert row["close"] > row["sma_50"]
        for symbol, (reason, detail) in skips.items():
            if reason == "not_matched" and "rs_rating" in detail:
                rejected = ratings[symbol]
                assert rejected is None or rejected < 80 or math.isnan(rejected)
        outcomes.append((rows, skips))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][0]) > 10
