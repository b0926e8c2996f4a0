from __future__ import annotations

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class ProgressConfig(AppConfig):
    name = "progress"
    verbose_name = "Scan progress"

    def ready(self) -> None:
        """Refuse to start with stage weights that do not name the four stages or do not sum
        to 1 (TECHNIC_STAGE_WEIGHTS): every process sets Django up, so every process refuses."""
        from progress.store import stage_weights
        from progress.tracker import validate_weights

        try:
            validate_weights(stage_weights())
        except ValueError as err:
            raise ImproperlyConfigured(f"TECHNIC_STAGE_WEIGHTS: {err}") from err
