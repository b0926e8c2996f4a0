"""Log lines that carry their scan's id, as plain text or as JSON (``TECHNIC_LOG_FORMAT=json``).

While a Celery task that takes a ``scan_id`` runs, :data:`current_scan` holds that id (set by
the signals in ``technic_project.celery``), and :class:`ScanIdFilter` puts it on every record
logged meanwhile, by our code or by Celery's, so every line of a scan's work can be found by
its id. A record may also name its scan explicitly with ``extra={"scan_id": …}``.

No line shows a credential: :class:`RedactFilter` (on the console handler) and
:func:`redact_access_log` (daphne's access log, which daphne writes itself) replace the values
of ``token=`` and ``ticket=`` in URLs and of ``Authorization: Token …`` with ``[redacted]``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from daphne.access import AccessLogGenerator

current_scan: ContextVar[str | None] = ContextVar("current_scan", default=None)

REDACTED = "[redacted]"
# A URL's token= or ticket= value; an Authorization header's "Token <key>" (DRF keys are 40 hex digits).
_CREDENTIALS = re.compile(r"((?i:\b(?:token|ticket)=))[^\s&#\"']+|(\bToken\s+)[0-9a-f]{40}\b")


def redact(text: str) -> str:
    """``text`` with the values of ``token=`` and ``ticket=`` parameters and of ``Token <key>``
    replaced by ``[redacted]``."""
    return _CREDENTIALS.sub(lambda match: (match.group(1) or match.group(2)) + REDACTED, text)


class RedactFilter(logging.Filter):
    """Redacts credentials from a record's message (see ``redact``); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_access_log() -> None:
    """Makes daphne's access log redact credentials from the request lines it writes (daphne
    writes that log straight to its stream, not through ``logging``). Idempotent."""
    write_entry = AccessLogGenerator.write_entry
    if getattr(write_entry, "redacts", False):
        return

    @functools.wraps(write_entry)
    def redacting(self: AccessLogGenerator, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        write_entry(self, host, date, redact(request), *args, **kwargs)

    redacting.redacts = True  # type: ignore[attr-defined]
    AccessLogGenerator.write_entry = redacting


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
