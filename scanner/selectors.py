"""Reading scans back from the database."""

from __future__ import annotations

from scanner.engine.scan import Skip
from scanner.lifecycle import config_of
from scanner.models import Scan
from scanner.runner import ScanReport


def scan_report(scan: Scan) -> ScanReport:
    """The scan as the command line prints it: config, status, metrics, ranked rows, skips."""
    rows = [r.row for r in scan.results.order_by("-tech_rating", "symbol")]
    skipped = [Skip(s.symbol, s.reason, s.detail) for s in scan.skips.order_by("symbol")]
    assert scan.as_of is not None, "a finished scan has an as_of date"
    return ScanReport(
        config_of(scan),
        scan.as_of,
        scan.data_provider,
        scan.synthetic,
        str(scan.status),
        rows,
        skipped,
        scan.metrics,
        scan_id=str(scan.id),
    )
