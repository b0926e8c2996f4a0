"""Log records carry their scan's id, in plain text and as JSON."""

from __future__ import annotations

import json
import logging
import sys

from infra.logs import JsonFormatter, ScanIdFilter, current_scan


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("scanner.lifecycle", logging.INFO, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    ScanIdFilter().filter(rec)
    return rec


def test_a_record_logged_during_a_scans_task_carries_the_scan_id() -> None:
    token = current_scan.set("3f2b7a9e-0000-4000-8000-000000000001")
    try:
        assert record("batch done").__dict__["scan_id"] == "3f2b7a9e-0000-4000-8000-000000000001"
        assert record("named", scan_id="another").__dict__["scan_id"] == "another"  # an explicit id wins
    finally:
        current_scan.reset(token)
    assert record("outside any scan").__dict__["scan_id"] == ""


def test_the_json_format_is_one_object_per_line_with_the_scan_id_and_the_exception() -> None:
    token = current_scan.set("abc")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            rec = record("stage %s finished in %s s")
            rec.args = ("data_fetching", 0.5)
            rec.exc_info = sys.exc_info()
    finally:
        current_scan.reset(token)
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["message"] == "stage data_fetching finished in 0.5 s"
    assert payload["scan_id"] == "abc" and payload["level"] == "INFO" and payload["logger"] == "scanner.lifecycle"
    assert "ValueError: boom" in payload["exception"]
    assert "task" not in payload  # not inside a Celery task
