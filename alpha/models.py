"""Alpha models as versioned artefacts, and the model each scan uses.

A model row is never edited after it is written: its ``version`` is derived from its
parameters, so the same training (same data up to the same cut-off) gives the same version,
and a scan's metrics name the exact parameters that produced its alphas.
"""

from __future__ import annotations

from django.db import models


class AlphaModel(models.Model):
    """A fitted alpha model of one data source, with its training window and walk-forward evaluation."""

    version = models.CharField(max_length=64, help_text="<cut-off YYYYMMDD>-<hash of the parameters>")
    source = models.CharField(max_length=1024, db_index=True, help_text="the data source it was trained on")
    data_provider = models.CharField(max_length=16)
    data_namespace = models.CharField(max_length=128, help_text="the data's cache namespace when trained")
    horizons = models.JSONField(help_text="market dates ahead, e.g. [5, 10]")
    features = models.JSONField()
    train_start = models.DateField(help_text="first sample date")
    train_end = models.DateField(help_text="last sample date (its longest forward return ends on the cut-off)")
    data_cutoff = models.DateField(db_index=True, help_text="last bar date read; fits scans with as_of on or after")
    symbols = models.PositiveIntegerField()
    coefficients = models.JSONField(help_text="per horizon, each regressor's weight by name")
    parameters = models.JSONField(help_text="everything prediction needs (AlphaFit.to_dict())")
    evaluation = models.JSONField(help_text="walk-forward figures on the data up to the cut-off")
    training_seconds = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("source", "version"), name="one_alpha_model_per_source_version")]
        ordering = ("-data_cutoff", "-created_at", "-id")

    def __str__(self) -> str:
        return f"alpha {self.version} ({self.data_provider})"
