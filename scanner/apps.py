from __future__ import annotations

from typing import Any

from django.apps import AppConfig


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
