"""``python manage.py scan``: run one scan with a live four-stage display, then print results."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser, ArgumentTypeError
from datetime import date
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from kombu.exceptions import OperationalError as KombuOperationalError

from alpha.services import alpha_select, trained_alpha
from engine.alpha import TrainedAlpha
from engine.config import ConfigError, ScanConfig
from infra.cli import iso_date, one_line_errors
from market.providers import PROVIDER_NAMES, DataProviderError
from market.sources import DataSource, provider_for
from progress.store import stage_weights
from progress.tracker import ProgressTracker
from scanner.csv_export import render_csv
from scanner.follow import follow_scan
from scanner.models import ScanStatus
from scanner.runner import ScanReport, run_scan
from scanner.selectors import scan_report
from scanner.services import scan_cancel, scan_create
from scanner.steps import load_universe
from scanner.terminal import LiveDisplay, render_table


def _csv_list(value: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    if not items:
        raise ArgumentTypeError("expected a comma-separated list")
    return items


class Command(BaseCommand):
    help = "Run one scan and print a live four-stage progress display, then the ranked results."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        one_line_errors(parser, "scan")
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--provider", choices=PROVIDER_NAMES, help="market data provider")
        parser.add_argument("--data", type=Path, help="bars file or folder (parquet/csv providers)")
        parser.add_argument("--universe-file", type=Path, help="symbol,name,sector CSV")
        parser.add_argument("--symbols", type=_csv_list, default=(), help="comma-separated symbols")
        parser.add_argument(
            "--sectors", type=_csv_list, default=(), help='comma-separated GICS sectors, e.g. "Energy,Utilities"'
        )
        parser.add_argument("--max-symbols", type=int)
        parser.add_argument("--min-tech-rating", type=float, default=0.0)
        parser.add_argument(
            "--lookback-days", type=int, default=ScanConfig.lookback_days, help="trading days of history"
        )
        parser.add_argument("--as-of", type=iso_date, help="scan date YYYY-MM-DD (default: the latest market date)")
        parser.add_argument("--account-size", type=float, default=ScanConfig.account_size)
        parser.add_argument("--risk-pct", type=float, default=ScanConfig.risk_pct, help="fraction risked per trade")
        parser.add_argument("--target-rr", type=float, default=ScanConfig.target_rr)
        parser.add_argument("--min-price", type=float, default=ScanConfig.min_price)
        parser.add_argument("--min-dollar-volume", type=float, default=ScanConfig.min_dollar_volume)
        parser.add_argument("--filter", default="", help='a screen expression, e.g. "close > sma_50 and rsi_14 < 70"')
        parser.add_argument("--rank-by", default="", help="a number expression to rank by (default: the TechRating)")
        parser.add_argument("--order", choices=("desc", "asc"), default="desc", help="of --rank-by")
        parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
        parser.add_argument("--output", type=Path, help="write the results to this file instead of stdout")
        parser.add_argument("--top", type=int, default=25, help="rows in the table (0 = all)")
        parser.add_argument("--via-celery", action="store_true", help="run through the Celery workers")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            config = ScanConfig(
                symbols=tuple(s.upper() for s in opts["symbols"]),
                sectors=opts["sectors"],
                max_symbols=opts["max_symbols"],
                min_tech_rating=opts["min_tech_rating"],
                lookback_days=opts["lookback_days"],
                as_of=opts["as_of"],
                account_size=opts["account_size"],
                risk_pct=opts["risk_pct"],
                target_rr=opts["target_rr"],
                min_price=opts["min_price"],
                min_dollar_volume=opts["min_dollar_volume"],
                filter=opts["filter"],
                rank_by=opts["rank_by"],
                order=opts["order"],
            )
            source = DataSource(
                opts["provider"] or settings.TECHNIC_DATA_PROVIDER,
                str(opts["data"] or settings.TECHNIC_DATA_PATH or ""),
                str(opts["universe_file"] or settings.TECHNIC_UNIVERSE_PATH or ""),
            )
            provider = provider_for(source)
            _, as_of = load_universe(provider, config)  # bad input fails here, before the live display starts
            label = " (SYNTHETIC data)" if provider.synthetic else ""
            where = "on the Celery workers" if opts["via_celery"] else "in-process"
            display = LiveDisplay(sys.stderr, f"technic scan - {provider.name} provider{label}, {where}")
            if opts["via_celery"]:
                report = self._via_celery(config, source, display)
            else:
                tracker = ProgressTracker("cli", weights=stage_weights())
                report = run_scan(
                    config,
                    provider,
                    tracker,
                    lambda t: display.update(t.snapshot()),
                    self._alpha(source, as_of),
                    settings.TECHNIC_BENCHMARK,
                )
        except ConfigError as err:
            hint = f" (did you mean: {', '.join(err.suggestions)}?)" if err.suggestions else ""
            raise CommandError(f"{err}{hint}") from err
        except DataProviderError as err:
            raise CommandError(str(err)) from err
        self._write(report, opts)

    def _alpha(self, source: DataSource, as_of: date) -> TrainedAlpha | None:
        """The alpha model for this scan; None (alphas empty, said on stderr) when the database
        holding the models cannot be read: the in-process scan itself needs no database."""
        try:
            model = alpha_select(source, as_of)
        except DatabaseError as err:
            self.stderr.write(f"alpha models not read ({err}); run manage.py migrate; alphas stay empty")
            return None
        return trained_alpha(model) if model is not None else None

    def _via_celery(self, config: ScanConfig, source: DataSource, display: LiveDisplay) -> ScanReport:
        try:
            replies = current_app.control.ping(timeout=1.0)
        except (OSError, KombuOperationalError) as err:
            raise CommandError(f"cannot reach the broker at {settings.REDIS_URL}: {err}") from err
        if not replies:
            raise CommandError(
                "no Celery worker answered within 1 s; start one (celery -A technic_project worker)"
                " or run without --via-celery"
            )
        scan = scan_create(owner=None, config=config, source=source)
        self.stderr.write(f"scan {scan.id} queued ({scan.n_batches} batches of up to {scan.batch_size} symbols)")
        try:
            scan = follow_scan(scan.id, display.update)
        except KeyboardInterrupt:
            self.stderr.write("cancelling; partial results follow")
            scan_cancel(scan)
            scan = follow_scan(scan.id, display.update)
        if scan.status == ScanStatus.FAILED:
            raise CommandError(f"scan {scan.id} failed: {scan.error_code}: {scan.error_message}")
        return scan_report(scan)

    def _write(self, report: ScanReport, opts: dict[str, Any]) -> None:
        fmt = opts["format"]
        if fmt == "json":
            text = json.dumps(report.as_dict(), indent=2) + "\n"
        elif fmt == "csv":
            text = render_csv(report.rows)
        else:
            text = self._table(report, opts["top"] or None)
        if opts["output"]:
            try:
                opts["output"].write_text(text)
            except OSError as err:
                raise CommandError(f"cannot write {opts['output']}: {err.strerror}") from err
            self.stderr.write(f"wrote {len(report.rows)} results to {opts['output']}")
        else:
            self.stdout.write(text, ending="")

    @staticmethod
    def _table(report: ScanReport, top: int | None) -> str:
        m = report.metrics
        label = "  [SYNTHETIC demo data]" if report.synthetic else ""
        reasons = ", ".join(f"{reason} {n}" for reason, n in m["skipped_by_reason"].items()) or "none"
        head = (
            f"\nRanked results as of {report.as_of.isoformat()} ({report.provider}){label}\n"
            f"{m['results']} results, {m['skipped']} skipped ({reasons}); "
            f"{m['elapsed_seconds']:.2f}s, {m['symbols_per_second']} symbols/s\n\n"
        )
        return head + render_table(report.rows, top)
