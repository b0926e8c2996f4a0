from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save


class ScannerConfig(AppConfig):
    name = "scanner"
    verbose_name = "Scanner"

    def ready(self) -> None:
        """Lost live progress is rebuilt from the scan rows: tell the progress store where they are."""
        from progress import store
        from scanner.models import Scan, ScanResult, ScanSkip

        def with_outcome(scan_id: Any) -> int:
            return ScanResult.objects.filter(scan_id=scan_id).count() + ScanSkip.objects.filter(scan_id=scan_id).count()

        store.use_rows(lambda key: Scan.objects.filter(id=key).first(), with_outcome)
        post_save.connect(_starter_screens, sender=settings.AUTH_USER_MODEL, dispatch_uid="scanner.starter_screens")


def _starter_screens(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """A new user starts with the starter screens (docs/screens.md)."""
    if created and not raw:
        from scanner.screens import starter_screens_create

        starter_screens_create(instance)
