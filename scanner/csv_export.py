"""Result rows as CSV (the API's ``?format=csv`` and ``manage.py scan --format csv``), safe to
open in a spreadsheet.

Columns are ``ROW_FIELDS``, with ``screen`` spread out as ``screen.rank`` and one
``screen: <text>`` column per field or call the screen names (those of the first row: every row
of a scan has the same); ``subscores`` is written as JSON, the flag lists joined with ``;``, a
missing value as an empty cell. Names and sectors come from universe files and data providers,
that is from outside, and a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is a formula to Excel, LibreOffice and Google Sheets. OWASP's rule is applied to
every text cell (``csv_cell``): such a cell gets a leading ``'``, which spreadsheets show as
text. Numbers stay numbers: a return of -0.05 is written ``-0.05``.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from engine.scan import ROW_FIELDS

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Text that is a plain number (a spreadsheet reads it as that number, not as a formula).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
ROWS_PER_CHUNK = 200
# The columns of every export; a screen's values follow as ``screen: <text>``.
CSV_FIELDS = (*(f for f in ROW_FIELDS if f != "screen"), "screen.rank")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell: a text that a spreadsheet would take for a formula gets a
    leading ``'``; numbers, and texts that are plain numbers, are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _row_value(field: str, value: Any) -> Any:
    if value is None:
        return ""
    if field == "subscores":
        return json.dumps(value, sort_keys=True)
    if field in ("flags", "quality_flags", "risk_flags"):
        return ";".join(value)
    return value


class _Line:
    """A file-like object whose ``write`` hands back what it was given: ``csv.writer`` then
    returns each line instead of writing it anywhere."""

    def write(self, text: str) -> str:
        return text


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The header line, then one line per row."""
    writer = csv.writer(_Line(), lineterminator="\n")
    fields = CSV_FIELDS[:-1]
    it = iter(rows)
    first = next(it, None)
    names = list(_screen(first)["values"]) if first is not None else []
    yield writer.writerow([csv_cell(c) for c in (*CSV_FIELDS, *(f"screen: {n}" for n in names))])
    if first is None:
        return
    for row in itertools.chain([first], it):
        screen = _screen(row)
        cells = [_row_value(field, row[field]) for field in fields]
        cells.append(_row_value("rank", screen.get("rank")))
        cells.extend(_row_value(n, screen["values"].get(n)) for n in names)
        yield writer.writerow([csv_cell(c) for c in cells])


def _screen(row: dict[str, Any]) -> dict[str, Any]:
    return row.get("screen") or {"values": {}, "rank": None}


def render_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The whole CSV as one text."""
    return "".join(csv_lines(rows))


async def stream_csv(rows: Iterable[dict[str, Any]]) -> AsyncIterator[str]:
    """The CSV in chunks of ``ROWS_PER_CHUNK`` lines, for a streaming response: the server sends
    each chunk as it is made, and other requests are served in between."""
    chunk: list[str] = []
    for line in csv_lines(rows):
        chunk.append(line)
        if len(chunk) == ROWS_PER_CHUNK:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)
