"""Training alpha models, choosing the model a scan of a source may use, and reading stored models.
Commands and tasks call these."""

from __future__ import annotations

import logging
import threading
import time
from datetime import date
from pathlib import Path

from cachetools import LRUCache, cached
from django.conf import settings

from alpha.models import AlphaModel
from engine.alpha import AlphaFit, AlphaSettings, TrainedAlpha, train
from market.sources import DataSource, provider_for, resolve_as_of

logger = logging.getLogger(__name__)

TRAIN_LOOKBACK_BARS = 2520
"""Bars of history (ten years) training reads per symbol, ending at the cut-off."""


def source_key(source: DataSource) -> str:
    """Names a data source for model selection: the provider and its resolved paths (the demo
    market: its size). Unlike the cache namespace it survives new bars being appended to a
    file, so a model stays usable for later scans of the same source."""
    if source.provider == "demo":
        return f"demo-{settings.TECHNIC_DEMO_SYMBOLS}"
    paths = (str(Path(p).resolve()) if p else "" for p in (source.data_path, source.universe_path))
    return ":".join((source.provider, *paths))


def alpha_train(
    source: DataSource, as_of: date | None = None, alpha_settings: AlphaSettings | None = None
) -> AlphaModel:
    """Train on the source's bars dated on or before ``as_of`` (default: its last market date),
    evaluate walk-forward and store the model.

    Idempotent: the same data and cut-off give the same version, and the stored row is
    returned instead of a second one. Raises ConfigError (as_of outside the data),
    DataProviderError, AlphaDataError or AlphaTrainingError (too little history).
    """
    provider = provider_for(source)
    cutoff = resolve_as_of(provider, as_of)
    instruments = provider.instruments()
    started = time.perf_counter()
    bars = provider.bars([i.symbol for i in instruments], cutoff, TRAIN_LOOKBACK_BARS)
    trained = train(bars, {i.symbol: i.sector for i in instruments}, cutoff, alpha_settings)
    seconds = time.perf_counter() - started
    fit = trained.fit
    model, created = AlphaModel.objects.get_or_create(
        source=source_key(source),
        version=trained.version,
        defaults={
            "data_provider": source.provider,
            "data_namespace": source.cache_namespace(),
            "horizons": list(fit.horizons),
            "features": list(fit.features),
            "train_start": fit.train_start,
            "train_end": fit.train_end,
            "data_cutoff": fit.data_cutoff,
            "symbols": fit.n_symbols,
            "coefficients": fit.named_coefficients(),
            "parameters": fit.to_dict(),
            "evaluation": trained.evaluation,
            "training_seconds": round(seconds, 3),
        },
    )
    logger.info(
        "alpha model %s of %s %s in %.1f s", model.version, source.provider, "trained" if created else "exists", seconds
    )
    return model


# Stored models never change, so each worker process parses a model's parameters once.
@cached(LRUCache(maxsize=16), key=lambda model: (model.pk, model.version), lock=threading.Lock())
def trained_alpha(model: AlphaModel) -> TrainedAlpha:
    """The engine's view of a stored model."""
    return TrainedAlpha(AlphaFit.from_dict(model.parameters), model.evaluation, model.version)


def alpha_select(source: DataSource, as_of: date) -> AlphaModel | None:
    """The model a scan of ``source`` at ``as_of`` may use: of those trained on this source
    with a cut-off on or before ``as_of``, the one with the latest cut-off (the newest of those
    on a tie). None when there is none."""
    return (
        AlphaModel.objects.filter(source=source_key(source), data_cutoff__lte=as_of)
        .order_by("-data_cutoff", "-created_at", "-id")
        .first()
    )
