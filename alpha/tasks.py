"""Training alpha models on the workers (``alpha.tasks.train_alpha``)."""

from __future__ import annotations

from datetime import date
from typing import Any

import redis
from celery import shared_task
from django.db import OperationalError

from alpha.services import alpha_train
from market.sources import DataSource

TRANSIENT = (OperationalError, redis.ConnectionError, redis.TimeoutError)


@shared_task(
    name="alpha.tasks.train_alpha",
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=5,
)
def train_alpha(
    provider: str | None = None, data_path: str = "", universe_path: str = "", as_of: str | None = None
) -> dict[str, Any]:
    """Train and store a model of the given source (default: the configured one) with data up to
    ``as_of`` (ISO date; default: the latest). Idempotent: a redelivery finds the same version
    stored. Returns the model's version, cut-off and id."""
    source = DataSource(provider, data_path, universe_path) if provider else DataSource.from_settings()
    model = alpha_train(source, date.fromisoformat(as_of) if as_of else None)
    return {"id": model.pk, "version": model.version, "data_cutoff": model.data_cutoff.isoformat()}
