"""Alpha models as stored artefacts: training, versioning, selection, and the scans that use them."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from alpha.models import AlphaModel
from alpha.services import alpha_select, alpha_train, trained_alpha
from alpha.tasks import train_alpha
from engine.alpha import AlphaFit
from engine.config import ScanConfig
from market.sources import DataSource, provider_for
from progress.tracker import ProgressTracker
from scanner.alphas import scan_alpha, scan_alpha_metrics
from scanner.models import Scan, ScanResult
from scanner.runner import run_scan
from scanner.selectors import ranked_rows
from scanner.services import scan_create
from tests.support.processes import Workers
from tests.support.waits import wait_finished


@pytest.fixture
def real_source(market_dir: Path) -> DataSource:
    return DataSource("parquet", str(market_dir / "prices.parquet"), str(market_dir / "constituents.csv"))


@pytest.fixture(scope="module")
def small_market(market_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DataSource:
    """Sixty real symbols in a parquet file of their own (training on them takes about a second)."""
    folder = tmp_path_factory.mktemp("small_market")
    with (market_dir / "constituents.csv").open(newline="") as fh:
        universe = sorted(csv.DictReader(fh), key=lambda r: r["symbol"])[::8][:60]
    table = pq.read_table(market_dir / "prices.parquet")
    symbols = pa.array([r["symbol"] for r in universe])
    pq.write_table(table.filter(pc.is_in(table.column("symbol"), value_set=symbols)), folder / "prices.parquet")
    with (folder / "universe.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["symbol", "name", "sector"])
        writer.writerows([r["symbol"], r["name"], r["sector"]] for r in universe)
    return DataSource("parquet", str(folder / "prices.parquet"), str(folder / "universe.csv"))


def stub_model(source: DataSource, cutoff: date, version: str) -> AlphaModel:
    """A model row whose parameters nothing reads (the selector looks at source and dates only)."""
    from alpha.services import source_key

    return AlphaModel.objects.create(
        version=version,
        source=source_key(source),
        data_provider=source.provider,
        data_namespace="test",
        horizons=[5, 10],
        features=[],
        train_start=date(2014, 2, 7),
        train_end=cutoff,
        data_cutoff=cutoff,
        symbols=1,
        coefficients={},
        parameters={},
        evaluation={},
        training_seconds=0.0,
    )


@pytest.mark.django_db
def test_train_alpha_stores_a_versioned_model_with_its_window_and_evaluation_once(
    real_source: DataSource,
) -> None:
    args = ["--provider", "parquet", "--data", real_source.data_path, "--universe-file", real_source.universe_path]
    out = io.StringIO()
    call_command("train_alpha", *args, "--as-of", "2016-06-30", "--format", "json", stdout=out)
    printed = json.loads(out.getvalue())
    model = AlphaModel.objects.get()

    assert printed["version"] == model.version and model.version.startswith("20160630-")
    assert (model.data_cutoff, model.train_end) == (date(2016, 6, 30), date(2016, 6, 16))
    assert model.train_start == date(2014, 2, 7)  # 252 bars after the data's first day
    assert model.symbols > 480 and model.horizons == [5, 10]
    assert AlphaFit.from_dict(model.parameters).to_dict() == model.parameters  # everything prediction needs
    assert set(model.coefficients["10"]) >= {"ret_5d", "mom_12_1", "sector:Energy", "intercept"}
    for horizon in ("5", "10"):
        figures = model.evaluation["horizons"][horizon]
        assert figures["dates"] > 300 and figures["last_date"] <= "2016-06-30"
        assert set(figures["rank_ic"]) == {"mean", "std", "t_stat", "positive_share"}
        assert set(figures["decile_spread"]) == {"mean", "t_stat"}
    assert printed["evaluation"] == model.evaluation

    text = io.StringIO()
    call_command("train_alpha", *args, "--as-of", "2016-06-30", stdout=text)
    assert AlphaModel.objects.count() == 1  # the same data and cut-off: the same version, stored once
    assert model.version in text.getvalue() and "rank IC" in text.getvalue()

    with pytest.raises(CommandError, match="too little history"):
        call_command("train_alpha", *args, "--as-of", "2014-06-30")


@pytest.mark.django_db
def test_a_scan_gets_the_latest_model_of_its_source_whose_cutoff_is_on_or_before_its_as_of(
    real_source: DataSource, market_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = stub_model(real_source, date(2016, 6, 30), "20160630-a")
    late = stub_model(real_source, date(2016, 12, 30), "20161230-a")
    stub_model(real_source, date(2017, 6, 30), "20170630-a")
    stub_model(DataSource("demo"), date(2016, 12, 30), "20161230-demo")
    stub_model(DataSource("csv", str(market_dir)), date(2016, 12, 30), "20161230-csv")

    assert alpha_select(real_source, date(2016, 6, 29)) is None
    assert alpha_select(real_source, date(2016, 6, 30)) == early
    assert alpha_select(real_source, date(2016, 12, 29)) == early
    assert alpha_select(real_source, date(2017, 3, 31)) == late
    newer = stub_model(real_source, date(2016, 12, 30), "20161230-b")  # same cut-off, trained later
    assert alpha_select(real_source, date(2017, 3, 31)) == newer
    # the same files named by a relative path are the same source
    monkeypatch.chdir(market_dir)
    assert alpha_select(DataSource("parquet", "prices.parquet", "constituents.csv"), date(2017, 3, 31)) == newer


@pytest.mark.django_db
def test_a_scans_model_is_fixed_once_so_a_model_trained_meanwhile_is_not_mixed_in(small_market: DataSource) -> None:
    def new_scan() -> Scan:
        return Scan.objects.create(
            config={},
            data_provider="parquet",
            data_path=small_market.data_path,
            universe_path=small_market.universe_path,
            as_of=date(2017, 6, 30),
        )

    first = new_scan()
    assert scan_alpha(first) is None
    assert scan_alpha_metrics(first)["model"] is None
    assert "on or before 2017-06-30" in scan_alpha_metrics(first)["reason"]

    model = alpha_train(small_market, date(2016, 12, 30))
    assert scan_alpha(first) is None  # its batches already ran without a model
    second = new_scan()
    chosen = scan_alpha(second)
    assert chosen is not None and chosen.version == model.version
    metrics = scan_alpha_metrics(second)
    assert metrics["model"] == model.version and metrics["evaluation"] == model.evaluation
    assert set(metrics["blend"]) == {"alpha_5d", "alpha_10d"}
    assert metrics["data_cutoff"] == "2016-12-30"


@pytest.mark.django_db
def test_finished_results_are_ordered_by_the_blend_finalization_recorded(dead_cache: str) -> None:
    blend = {"alpha_10d": {"points": 5.0, "scale": 0.002}, "alpha_5d": {"points": 0.0, "scale": 0.001}}
    scan = Scan.objects.create(config={}, data_provider="demo", status="completed", metrics={"alpha": {"blend": blend}})
    for symbol, rating, alpha in (("AAA", 60.0, -0.002), ("BBB", 58.0, 0.002), ("CCC", 59.0, None)):
        row = {"symbol": symbol, "tech_rating": rating, "alpha_5d": alpha, "alpha_10d": alpha}
        ScanResult.objects.create(scan=scan, symbol=symbol, sector="Energy", tech_rating=rating, signal="hold", row=row)
    assert [r["symbol"] for r in ranked_rows(scan)] == ["BBB", "CCC", "AAA"]
    Scan.objects.filter(id=scan.id).update(metrics={"alpha": {"model": None}})
    scan.refresh_from_db()
    assert [r["symbol"] for r in ranked_rows(scan)] == ["AAA", "CCC", "BBB"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_on_the_workers_a_task_trains_the_model_and_scans_use_the_version_that_fits_their_as_of(
    workers: Workers, real_source: DataSource
) -> None:
    as_of = date(2017, 3, 31)

    def scan_on_workers(day: date, **config: Any) -> Scan:
        scan = scan_create(owner=None, config=ScanConfig(as_of=day, **config), source=real_source, batch_size=50)
        done = wait_finished(scan.id)
        assert done.status == "completed", done.error_message
        return done

    without = scan_on_workers(as_of, max_symbols=40)
    assert without.metrics["alpha"]["model"] is None
    rows = ranked_rows(without)
    assert rows and all(r["alpha_5d"] is None and r["alpha_10d"] is None for r in rows)
    assert all("no_alpha_model" in r["flags"] for r in rows)

    answer = train_alpha.delay("parquet", real_source.data_path, real_source.universe_path, "2016-12-30").get(
        timeout=120
    )
    model = AlphaModel.objects.get(id=answer["id"])
    assert answer["version"] == model.version and model.data_cutoff == date(2016, 12, 30)

    scan = scan_on_workers(as_of)
    assert scan.n_batches == 11
    assert scan.metrics["alpha"]["model"] == model.version
    assert scan.metrics["alpha"]["evaluation"] == model.evaluation
    rows = ranked_rows(scan)
    assert len(rows) > 490 and all(isinstance(r["alpha_10d"], float) for r in rows)
    assert not any("no_alpha_model" in r["flags"] for r in rows)
    # eleven batches on two worker processes give each symbol the alpha, and the list the
    # order, of one in-process scan with the same model
    local = run_scan(
        ScanConfig(as_of=as_of), provider_for(real_source), ProgressTracker("local"), None, trained_alpha(model)
    )
    assert rows == local.rows
    assert local.metrics["alpha"] == scan.metrics["alpha"]

    before = scan_on_workers(date(2016, 12, 29), max_symbols=20)
    assert before.metrics["alpha"]["model"] is None
    assert all(r["alpha_5d"] is None for r in ranked_rows(before))
