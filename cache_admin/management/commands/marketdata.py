"""``python manage.py marketdata status|update|backfill``: the market data store of the
configured remote provider (docs/marketdata.md)."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cache_admin.services import MarketDataInProgress, marketdata_backfill, marketdata_update
from engine.config import ConfigError
from infra.cli import iso_date, one_line_errors
from market import store, upkeep
from market.providers import DataProviderError
from market.sources import DataSource, provider_for


class ProgressLine:
    """``done/total symbols`` on stderr: rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        line = f"{self.what}: {done}/{total} symbols ({100 * done // max(total, 1)} %)"
        sys.stderr.write(f"\r{line}" if self.tty else f"{line}\n")
        if self.tty and done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Command(BaseCommand):
    help = "The market data store: its coverage (status), a top-up now (update), a backfill from a date."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        return one_line_errors(super().create_parser(prog_name, subcommand, **kwargs), "marketdata")

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{status,update,backfill}")
        status = one_line_errors(
            actions.add_parser("status", help="per source: symbols, days, bars, days missing"), "marketdata"
        )
        status.add_argument("--json", action="store_true", help="print JSON instead of a table")
        update = one_line_errors(
            actions.add_parser("update", help="top the store up to the latest closed day"), "marketdata"
        )
        backfill = one_line_errors(actions.add_parser("backfill", help="fill the store from a date"), "marketdata")
        backfill.add_argument("--since", type=iso_date, required=True, help="first day, YYYY-MM-DD")
        for sub in (update, backfill):
            sub.add_argument("--budget", type=int, help="most requests to send (default: a full scan's budget)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["action"] == "status":
            self._status(opts["json"])
            return
        if opts.get("budget") is not None and opts["budget"] < 1:
            raise CommandError("--budget must be at least 1")
        source = DataSource.from_settings()
        if not isinstance(self._provider(source), store.StoredProvider):
            raise CommandError(
                f"the {source.provider} provider reads local data and keeps no market data store"
                " (set TECHNIC_DATA_PROVIDER=polygon and POLYGON_API_KEY to use one)"
            )
        try:
            if opts["action"] == "update":
                report = marketdata_update(None, "cli", opts["budget"], ProgressLine("update"), source)
            else:
                progress = ProgressLine("backfill")
                report = marketdata_backfill(opts["since"], None, "cli", opts["budget"], progress, source)
        except MarketDataInProgress as err:
            raise CommandError(f"{err}; wait for it to finish (manage.py marketdata status shows the store)") from err
        except (ConfigError, DataProviderError) as err:
            raise CommandError(str(err)) from err
        self._report(report)

    @staticmethod
    def _provider(source: DataSource) -> Any:
        try:
            return provider_for(source)
        except DataProviderError as err:
            raise CommandError(str(err)) from err

    def _report(self, report: upkeep.Report) -> None:
        self.stdout.write(
            f"{report.source}: {report.done}/{report.symbols} symbols through {report.through},"
            f" {report.bars_written} bars written, {report.requests} requests, {report.seconds:.1f} s"
        )
        for symbol, error in list(report.failed.items())[:20]:
            self.stderr.write(f"  {symbol}: {error}")
        if report.stopped:
            raise CommandError(
                f"stopped after {report.done} of {report.symbols} symbols: {report.stopped};"
                " what was fetched is stored: run it again to go on"
            )
        if report.failed:
            raise CommandError(f"{len(report.failed)} symbols could not be fetched; run it again to retry them")

    def _status(self, as_json: bool) -> None:
        sources = upkeep.coverage()
        if as_json:
            self.stdout.write(json.dumps({"sources": sources}, indent=2))
            return
        if not sources:
            self.stdout.write("the market data store is empty (manage.py marketdata backfill --since DATE fills it)")
            return
        for s in sources:
            self.stdout.write(
                f"{s['source']}: {s['symbols']} symbols, {s['bars']} bars, {s['first_day'] or '-'} to"
                f" {s['last_day'] or '-'}, {s['days_missing']} market days missing;"
                f" calendar to {s['calendar_last_day'] or '-'}, splits applied through {s['splits_through'] or '-'}"
            )
