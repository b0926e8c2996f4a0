"""Beat schedules in a named time zone, whatever the app's (``CELERY_TIMEZONE`` stays UTC)."""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo

from celery.schedules import crontab


class new_york_crontab(crontab):
    """A crontab read in New York time: ``new_york_crontab(hour=20, minute=30)`` runs at 20:30
    New York, in summer and winter alike."""

    @property
    def tz(self) -> tzinfo:  # a fixed zone instead of the app's
        return ZoneInfo("America/New_York")
