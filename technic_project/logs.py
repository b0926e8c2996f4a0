"""Log lines that carry their scan's id, as plain text or as JSON (``TECHNIC_LOG_FORMAT=json``).

While a Celery task that takes a ``scan_id`` runs, :data:`current_scan` holds that id (set by
the signals in ``technic_project.celery``), and :class:`ScanIdFilter` puts it on every record
logged meanwhile, by our code or by Celery's, so every line of a scan's work can be found by
its id. A record may also name its scan explicitly with ``extra={"scan_id": …}``.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

current_scan: ContextVar[str | None] = ContextVar("current_scan", default=None)


class ScanIdFilter(logging.Filter):
    """Sets ``record.scan_id`` (empty outside a scan's work); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        named = getattr(record, "scan_id", None)
        record.scan_id = str(named) if named else current_scan.get() or ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, scan_id, task, exception."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
            "scan_id": getattr(record, "scan_id", "") or None,
        }
        task = _current_task()
        if task:
            payload["task"] = task
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def _current_task() -> dict[str, str] | None:
    from celery import current_task

    if not current_task or current_task.request.id is None:  # a Proxy: false outside a task
        return None
    return {"name": current_task.name, "id": current_task.request.id}
