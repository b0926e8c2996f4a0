"""Reading scans back from the database."""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import Any

from django.db.models import QuerySet

from engine import ENGINE_VERSION
from engine.scan import Skip, rank_rows
from market import cache
from progress.store import current_snapshot
from scanner.lifecycle import config_of
from scanner.models import TERMINAL_STATUSES, Scan, ScanStatus
from scanner.runner import ScanReport


def ranked_rows(scan: Scan) -> list[dict[str, Any]]:
    """The scan's result rows, best first: by ``rank_rows`` with the alpha blend finalization
    recorded in ``metrics["alpha"]["blend"]`` (TechRating descending, then symbol, while there
    is none). Those of a completed or cancelled scan, which can no longer change, are read
    through the price cache (a failed scan's batches may still be writing)."""

    def load() -> list[dict[str, Any]]:
        rows = [r.row for r in scan.results.order_by("-tech_rating", "symbol")]
        return rank_rows(rows, (scan.metrics.get("alpha") or {}).get("blend"), config_of(scan).screen)

    if scan.status not in (ScanStatus.COMPLETED, ScanStatus.CANCELLED):
        return load()
    return cache.results(scan.id, load)


def scan_report(scan: Scan) -> ScanReport:
    """The scan as the command line prints it: config, status, metrics, ranked rows, skips."""
    skipped = [Skip(s.symbol, s.reason, s.detail) for s in scan.skips.order_by("symbol")]
    assert scan.as_of is not None, "a finished scan has an as_of date"
    return ScanReport(
        config_of(scan),
        scan.as_of,
        scan.data_provider,
        scan.synthetic,
        str(scan.status),
        ranked_rows(scan),
        skipped,
        scan.metrics,
        scan_id=str(scan.id),
    )


def user_scan(user: Any, scan_id: Any) -> Scan | None:
    """The scan if it exists and belongs to ``user``; None otherwise (the two look the same)."""
    return Scan.objects.filter(pk=scan_id, owner_id=user.pk).first()


def active_scans(user: Any) -> list[dict[str, Any]]:
    """The user's pending and running scans, newest first, with where their progress stands."""
    scans = Scan.objects.filter(owner_id=user.pk).exclude(status__in=TERMINAL_STATUSES).order_by("-created_at")
    active = []
    for scan in scans.defer("universe"):
        snap = current_snapshot(scan)
        active.append(
            {
                "scan_id": scan.id,
                "status": scan.status,
                "current_stage": snap["current_stage"],
                "overall_progress": snap["overall_progress"],
                "created_at": scan.created_at,
            }
        )
    return active


def finished_scans(user: Any) -> QuerySet[Scan]:
    """The user's completed, failed and cancelled scans, newest first."""
    return (
        Scan.objects.filter(owner_id=user.pk, status__in=TERMINAL_STATUSES)
        .defer("universe", "progress")
        .order_by("-created_at", "-pk")
    )


def scan_summary(scan: Scan) -> dict[str, Any]:
    """A finished scan in a list: status, config, dates, counts (None if it failed before
    finalization) and error."""
    return {
        "scan_id": scan.id,
        "status": scan.status,
        "config": scan.config,
        "as_of": scan.as_of,
        "created_at": scan.created_at,
        "finished_at": scan.finished_at,
        "result_count": scan.metrics.get("results"),
        "skipped_count": scan.metrics.get("skipped"),
        "error": scan_error(scan),
    }


def scan_error(scan: Scan) -> dict[str, str] | None:
    return {"code": scan.error_code, "message": scan.error_message} if scan.error_code else None


def scan_results(scan: Scan, server_paths: bool = False) -> dict[str, Any]:
    """``{"scan": {...}, "results": [rows ranked], "skipped": [...]}`` of a scan as it stands
    (a cancelled or failed scan's results are partial); the manifest names the data files by
    their full server paths only with ``server_paths`` (for staff)."""
    rows = ranked_rows(scan)
    return {
        "scan": {
            "id": scan.id,
            "status": scan.status,
            "config": scan.config,
            "data_provider": scan.data_provider,
            "synthetic": scan.synthetic,
            "as_of": scan.as_of,
            "created_at": scan.created_at,
            "started_at": scan.started_at,
            "finished_at": scan.finished_at,
            "error": scan_error(scan),
            "metrics": scan.metrics,
            "stage_timings": scan.stage_timings(),
            "manifest": scan_manifest(scan, rows, server_paths),
        },
        "results": rows,
        "skipped": list(scan.skips.order_by("symbol").values("symbol", "reason", "detail")),
    }


def scan_manifest(scan: Scan, rows: list[dict[str, Any]], server_paths: bool = False) -> dict[str, Any]:
    """What it takes to reproduce the scan: the config's hash (sha256 of its JSON with sorted
    keys and no spaces), the engine version finalization recorded (the running engine's for a
    scan that failed before), the data source (its files by name, or by full server path with
    ``server_paths``), the as_of date and, per result symbol, the date of the last bar its
    indicators used (the row's own ``as_of``)."""

    def shown(path: str) -> str | None:
        if not path:
            return None
        return path if server_paths else PurePath(path).name

    canonical = json.dumps(scan.config, sort_keys=True, separators=(",", ":"))
    return {
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest(),
        "engine_version": scan.metrics.get("engine_version", ENGINE_VERSION),
        "data_provider": scan.data_provider,
        "data_source": {
            "provider": scan.data_provider,
            "data_path": shown(scan.data_path),
            "universe_path": shown(scan.universe_path),
        },
        "as_of": scan.as_of,
        "screen": _manifest_screen(scan),
        "last_bar": {row["symbol"]: row["as_of"] for row in rows},
    }


def _manifest_screen(scan: Scan) -> dict[str, Any]:
    """The screen as it ran (its text from the config, so editing a saved screen later changes
    nothing here) and the saved screen it came from."""
    config = config_of(scan)
    return {"filter": config.filter, "rank_by": config.rank_by, "order": config.order, "screen_id": scan.screen_id}


def scan_diff(scan: Scan, other: Scan) -> dict[str, Any]:
    """How the results changed from ``scan`` to ``other``: ``entered`` are symbols with a result
    in ``other`` but not in ``scan``, ``left`` the reverse; ``rating_changes`` lists the symbols
    in both whose TechRating differs (``change`` = ``after`` - ``before``, ``before`` from
    ``scan``), largest absolute change first, then by symbol. Symbols sorted."""
    before = dict(scan.results.values_list("symbol", "tech_rating"))
    after = dict(other.results.values_list("symbol", "tech_rating"))
    changes = [
        {"symbol": s, "before": before[s], "after": after[s], "change": round(after[s] - before[s], 6)}
        for s in before.keys() & after.keys()
        if after[s] != before[s]
    ]
    return {
        "scan_id": scan.id,
        "other_id": other.id,
        "entered": sorted(after.keys() - before.keys()),
        "left": sorted(before.keys() - after.keys()),
        "rating_changes": sorted(changes, key=lambda c: (-abs(c["change"]), c["symbol"])),
    }
