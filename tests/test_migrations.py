"""Migrations keep the rows they move: ScanAlpha left the alpha app for the scanner app."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("scanner", "0002_scan_progress"), ("alpha", "0001_initial")]
AFTER = [("scanner", "0003_scanalpha"), ("alpha", "0002_scanalpha_moves_to_scanner")]


@pytest.mark.django_db(transaction=True)
def test_a_scans_alpha_model_survives_the_move_to_the_scanner_app() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    scan = old.get_model("scanner", "Scan").objects.create(id=uuid.uuid4(), config={}, universe=[], metrics={})
    model = old.get_model("alpha", "AlphaModel").objects.create(
        version="20180207-abc",
        source="demo-40",
        data_provider="demo",
        data_namespace="ns",
        horizons=[5],
        features=[],
        train_start="2014-01-02",
        train_end="2018-01-31",
        data_cutoff="2018-02-07",
        symbols=40,
        coefficients={},
        parameters={},
        evaluation={},
        training_seconds=1.0,
    )
    old.get_model("alpha", "ScanAlpha").objects.create(scan_id=scan.pk, model_id=model.pk)
    no_model = old.get_model("scanner", "Scan").objects.create(id=uuid.uuid4(), config={}, universe=[], metrics={})
    old.get_model("alpha", "ScanAlpha").objects.create(scan_id=no_model.pk, model=None)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    moved = {row.scan_id: row.model_id for row in new.get_model("scanner", "ScanAlpha").objects.all()}
    assert moved == {scan.pk: model.pk, no_model.pk: None}
    assert "alpha_scanalpha" not in connection.introspection.table_names()

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
