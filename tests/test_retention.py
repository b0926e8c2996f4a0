"""Retention of finished scans: old completed, failed and cancelled scans go with their results
and skips, in short transactions; pending and running scans stay however old; the beat task
follows TECHNIC_SCAN_RETENTION_DAYS and runs on a real worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scanner.models import TERMINAL_STATUSES, Scan, ScanResult, ScanSkip
from scanner.retention import retention_cutoff, scan_purge
from scanner.tasks import purge_finished_scans
from technic_project.celery import app
from tests.support.factories import ScanFactory, ScanResultFactory, ScanSkipFactory
from tests.support.processes import Workers

pytestmark = pytest.mark.django_db(transaction=True)


def aged_scan(status: str, days: float, finished: bool = True, rows: int = 3) -> Scan:
    """A scan created ``days`` ago (and finished then, for a terminal one), with result rows and a skip."""
    scan = ScanFactory.create(status=status)
    then = timezone.now() - timedelta(days=days)
    ended = then if finished and status in TERMINAL_STATUSES else None
    Scan.objects.filter(pk=scan.pk).update(created_at=then - timedelta(minutes=5), finished_at=ended)
    ScanResultFactory.create_batch(rows, scan=scan)
    ScanSkipFactory.create(scan=scan)
    return scan


def test_finished_scans_older_than_the_cutoff_go_with_their_results_and_skips() -> None:
    old = [aged_scan(status, 100) for status in ("completed", "failed", "cancelled")]
    never_began = aged_scan("failed", 100, finished=False)
    kept = [aged_scan("completed", 10), aged_scan("pending", 400), aged_scan("running", 400)]

    assert scan_purge(timezone.now() - timedelta(days=90)) == 4

    assert set(Scan.objects.values_list("pk", flat=True)) == {s.pk for s in kept}
    gone = [s.pk for s in [*old, never_began]]
    assert not ScanResult.objects.filter(scan_id__in=gone).exists()
    assert not ScanSkip.objects.filter(scan_id__in=gone).exists()
    assert ScanResult.objects.count() == 3 * len(kept) and ScanSkip.objects.count() == len(kept)


def test_purging_deletes_a_few_scans_per_transaction_and_a_second_run_finds_nothing() -> None:
    for _ in range(5):
        aged_scan("completed", 100)
    before = timezone.now() - timedelta(days=90)
    with CaptureQueriesContext(connection) as queries:
        assert scan_purge(before, chunk=2) == 5
    scan_deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "scanner_scan" ')]
    assert len(scan_deletes) == 3  # 2 + 2 + 1
    assert not Scan.objects.exists()
    assert scan_purge(before, chunk=2) == 0


def test_the_purge_follows_the_retention_setting_and_zero_keeps_every_scan() -> None:
    scan = aged_scan("completed", 100)
    with override_settings(TECHNIC_SCAN_RETENTION_DAYS=0):
        assert retention_cutoff() is None
        assert purge_finished_scans() == 0
    with override_settings(TECHNIC_SCAN_RETENTION_DAYS=120):
        assert purge_finished_scans() == 0
    assert Scan.objects.filter(pk=scan.pk).exists()
    with override_settings(TECHNIC_SCAN_RETENTION_DAYS=30):
        assert purge_finished_scans() == 1
    assert not Scan.objects.filter(pk=scan.pk).exists()


@pytest.mark.integration
def test_beat_schedules_the_purge_and_a_worker_runs_it(workers: Workers) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["scan-retention"]
    assert entry["task"] == "scanner.tasks.purge_finished_scans"
    assert entry["schedule"] == settings.TECHNIC_SCAN_RETENTION_INTERVAL
    old, recent = aged_scan("completed", settings.TECHNIC_SCAN_RETENTION_DAYS + 1), aged_scan("completed", 1)
    assert app.send_task(entry["task"]).get(timeout=60) == 1
    assert list(Scan.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not ScanResult.objects.filter(scan_id=old.pk).exists()
