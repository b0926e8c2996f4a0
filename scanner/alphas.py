"""The alpha model each scan uses: chosen once, by the first batch that asks, then fixed."""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache, cached

from alpha.services import alpha_select, trained_alpha
from engine.alpha import TrainedAlpha, no_model_metrics
from market.sources import DataSource
from scanner.models import Scan, ScanAlpha


# A scan's model never changes once fixed, so each worker process looks it up once per scan.
@cached(LRUCache(maxsize=64), key=lambda scan: scan.pk, lock=threading.Lock())
def scan_alpha(scan: Scan) -> TrainedAlpha | None:
    """The model of ``scan``, chosen by the first caller and then fixed, so every batch of a scan
    uses the same one even if a model is trained meanwhile. Idempotent. Raises ValueError
    while the scan has no as_of."""
    assignment = ScanAlpha.objects.select_related("model").filter(scan_id=scan.pk).first()
    if assignment is None:
        if scan.as_of is None:
            raise ValueError(f"scan {scan.pk} has no as_of yet; its alpha model is chosen once it has one")
        chosen = alpha_select(DataSource(scan.data_provider, scan.data_path, scan.universe_path), scan.as_of)
        assignment, _ = ScanAlpha.objects.select_related("model").get_or_create(
            scan_id=scan.pk, defaults={"model": chosen}
        )
    return trained_alpha(assignment.model) if assignment.model is not None else None


def scan_alpha_metrics(scan: Scan) -> dict[str, Any]:
    """``metrics["alpha"]`` of a scan: the model's version, window, evaluation and ranking
    blend, or why there is none."""
    if scan.as_of is None:
        return {"model": None, "reason": "the scan ended before its as_of date was fixed"}
    alpha = scan_alpha(scan)
    return alpha.metrics() if alpha is not None else no_model_metrics(scan.as_of)
