"""``python manage.py train_alpha``: fit, evaluate walk-forward and store an alpha model."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from alpha.models import AlphaModel
from alpha.services import alpha_train, trained_alpha
from engine.alpha import AlphaDataError, AlphaTrainingError
from engine.config import ConfigError
from infra.cli import iso_date
from market.providers import PROVIDER_NAMES, DataProviderError
from market.sources import DataSource


class Command(BaseCommand):
    help = (
        "Fit the alpha model on the data up to --as-of, evaluate it walk-forward on that data and "
        "store it; scans of the same source with an as_of on or after its cut-off then use it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--provider", choices=PROVIDER_NAMES, help="market data provider")
        parser.add_argument("--data", type=Path, help="bars file or folder (parquet/csv providers)")
        parser.add_argument("--universe-file", type=Path, help="symbol,name,sector CSV")
        parser.add_argument(
            "--as-of", type=iso_date, help="cut-off YYYY-MM-DD: no later bar is read (default: the latest market date)"
        )
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args: Any, **opts: Any) -> None:
        source = DataSource(
            opts["provider"] or settings.TECHNIC_DATA_PROVIDER,
            str(opts["data"] or settings.TECHNIC_DATA_PATH or ""),
            str(opts["universe_file"] or settings.TECHNIC_UNIVERSE_PATH or ""),
        )
        try:
            model = alpha_train(source, opts["as_of"])
        except ConfigError as err:
            hint = f" (did you mean: {', '.join(err.suggestions)}?)" if err.suggestions else ""
            raise CommandError(f"{err}{hint}") from err
        except (DataProviderError, AlphaDataError, AlphaTrainingError) as err:
            raise CommandError(str(err)) from err
        if opts["format"] == "json":
            self.stdout.write(json.dumps(_as_dict(model), indent=2))
        else:
            self.stdout.write(_as_text(model))


def _as_dict(model: AlphaModel) -> dict[str, Any]:
    return {
        "version": model.version,
        "data_provider": model.data_provider,
        "source": model.source,
        "train_start": model.train_start.isoformat(),
        "train_end": model.train_end.isoformat(),
        "data_cutoff": model.data_cutoff.isoformat(),
        "symbols": model.symbols,
        "features": model.features,
        "coefficients": model.coefficients,
        "evaluation": model.evaluation,
        "blend": trained_alpha(model).blend,
        "training_seconds": model.training_seconds,
    }


def _as_text(model: AlphaModel) -> str:
    blend = trained_alpha(model).blend
    lines = [
        f"alpha model {model.version} ({model.data_provider}, {model.symbols} symbols)",
        f"  trained on {model.train_start} .. {model.train_end}, cut-off {model.data_cutoff} "
        f"({model.training_seconds:.1f} s with the evaluation)",
        f"  walk-forward: refit every {model.evaluation['settings']['refit_every']} market dates, "
        f"{model.evaluation['refits']} refits from {model.evaluation['first_cutoff']}",
    ]
    for horizon, figures in model.evaluation["horizons"].items():
        ic, spread = figures["rank_ic"], figures["decile_spread"]
        points = blend[f"alpha_{horizon}d"]["points"]
        lines.append(
            f"  {horizon:>2}d: rank IC {_num(ic['mean'])} (t {_num(ic['t_stat'], 2)}, {figures['dates']} dates), "
            f"top-bottom decile {_num(spread['mean'])} (t {_num(spread['t_stat'], 2)}); "
            + (f"in the ranking at {points:g} points" if points else "not in the ranking (no significant IC)")
        )
    return "\n".join(lines)


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
