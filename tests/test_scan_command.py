"""``python manage.py scan`` as a user runs it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from engine.scan import ROW_FIELDS
from scanner.csv_export import CSV_FIELDS
from tests.support.processes import manage


@pytest.fixture(scope="module")
def real(market_dir: Path) -> list[str]:
    return [
        "--provider",
        "parquet",
        "--data",
        str(market_dir / "prices.parquet"),
        "--universe-file",
        str(market_dir / "constituents.csv"),
    ]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_an_unknown_sector_is_a_one_line_error_suggesting_the_right_name(real: list[str]) -> None:
    assert_one_line_error(manage(*real, "--sectors", "Enrgy"), "unknown sector 'Enrgy'", "Energy")


def test_an_unknown_symbol_is_a_one_line_error(real: list[str]) -> None:
    assert_one_line_error(manage(*real, "--symbols", "AAPL,ZZZZ"), "ZZZZ")


def test_zero_max_symbols_is_a_one_line_error() -> None:
    assert_one_line_error(manage("--max-symbols", "0"), "max_symbols")


def test_a_non_integer_max_symbols_is_a_one_line_error() -> None:
    assert_one_line_error(manage("--max-symbols", "lots"), "--max-symbols", "lots")


def test_a_date_outside_the_data_is_a_one_line_error_naming_the_range(real: list[str]) -> None:
    assert_one_line_error(manage(*real, "--as-of", "2030-01-01"), "2030-01-01", "2013-02-08", "2018-02-07")


def test_a_malformed_date_is_a_one_line_error() -> None:
    assert_one_line_error(manage("--as-of", "yesterday"), "yesterday")


def test_a_missing_data_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    assert_one_line_error(manage("--provider", "parquet", "--data", str(missing)), str(missing))


def test_a_malformed_data_file_is_a_one_line_error(tmp_path: Path, market_dir: Path) -> None:
    bad = tmp_path / "bars.csv"
    bad.write_text("symbol,date,open\nAAPL,not-a-date,1\n")
    proc = manage("--provider", "csv", "--data", str(bad), "--universe-file", str(market_dir / "constituents.csv"))
    assert_one_line_error(proc, str(bad))


def test_json_output_holds_the_scan_the_ranked_results_and_the_skip_list(real: list[str], tmp_path: Path) -> None:
    out = tmp_path / "energy.json"
    proc = manage(*real, "--sectors", "Energy", "--format", "json", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["scan"]["status"] == "completed"
    assert doc["scan"]["id"] is None  # in-process scans are not recorded
    assert doc["scan"]["sectors"] == ["Energy"]
    assert doc["scan"]["as_of"] == "2018-02-07"
    assert doc["scan"]["synthetic"] is False
    symbols = [r["symbol"] for r in doc["results"]] + [s["symbol"] for s in doc["skipped"]]
    assert len(symbols) == len(set(symbols)) == 32
    ratings = [r["tech_rating"] for r in doc["results"]]
    assert ratings == sorted(ratings, reverse=True)
    assert all(list(r) == list(ROW_FIELDS) for r in doc["results"])
    assert all(set(s) == {"symbol", "reason", "detail"} for s in doc["skipped"])
    assert "symbol_scanning" in proc.stderr


def test_csv_output_has_the_row_fields_as_columns(real: list[str]) -> None:
    proc = manage(*real, "--symbols", "AAPL,MSFT,XOM", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert tuple(rows[0]) == CSV_FIELDS
    assert sorted(r["symbol"] for r in rows) == ["AAPL", "MSFT", "XOM"]
    assert all(json.loads(r["subscores"]) for r in rows)


def test_the_demo_scan_shows_four_stage_progress_and_labels_its_data_synthetic() -> None:
    proc = manage("--max-symbols", "60")
    assert proc.returncode == 0, proc.stderr
    for stage in ("universe_loading", "data_fetching", "symbol_scanning", "finalization"):
        assert stage in proc.stderr
    assert "SYNTHETIC" in proc.stderr and "SYNTHETIC" in proc.stdout
    assert "Ranked results" in proc.stdout
