"""The Celery app ``technic_project`` (``celery -A technic_project worker``)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "technic_project.settings")

logger = logging.getLogger(__name__)

app = Celery("technic_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def check_time_limits(**_: Any) -> None:
    """Refuse to start a worker whose task time limit reaches the broker visibility timeout:
    the broker would hand a still-running task to a second worker.

    Celery logs and swallows exceptions from signal receivers, so this exits explicitly.
    """
    from django.conf import settings

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for name in ("CELERY_TASK_TIME_LIMIT", "CELERY_TASK_SOFT_TIME_LIMIT"):
        if getattr(settings, name) >= visibility:
            logger.critical(
                "%s=%s must be below the broker visibility timeout (%s s)", name, getattr(settings, name), visibility
            )
            raise SystemExit(
                f"configuration error: {name}={getattr(settings, name)} must be below the broker "
                f"visibility timeout CELERY_VISIBILITY_TIMEOUT={visibility}"
            )
