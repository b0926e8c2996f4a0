"""The terminal side of ``manage.py scan``: a live four-stage display and result tables (CSV is
``scanner.csv_export``)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import Any, TextIO

from progress.tracker import STAGES

BAR_WIDTH = 24
REDRAW_INTERVAL = 0.1


class LiveDisplay:
    """Draws progress snapshots: redrawn in place on a terminal, one line per change otherwise.

    Redraws are limited to ten a second; stage changes and the end are always drawn.
    """

    def __init__(self, stream: TextIO, header: str) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.header = header
        self._lines = 0
        self._last_draw = 0.0
        self._last_key: tuple[Any, ...] | None = None
        self._header_written = False
        self._printed: dict[str, str] = {}

    def update(self, snap: dict[str, Any]) -> None:
        """Draw a progress snapshot (``ProgressTracker.snapshot()``, or one read from the store)."""
        key = (snap["current_stage"], tuple(s["status"] for s in snap["stages"].values()), snap["status"])
        now = time.monotonic()
        important = key != self._last_key
        if not important and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_key, self._last_draw = key, now
        if self.tty:
            self._redraw(snap)
        elif important:
            self._line(snap)

    def _redraw(self, snap: dict[str, Any]) -> None:
        lines = [self.header]
        for name in STAGES:
            st = snap["stages"][name]
            filled = round(BAR_WIDTH * st["progress"] / 100)
            seconds = "" if st["seconds"] is None else f"{st['seconds']:6.1f}s"
            tail = "ETA " + snap["stage_eta_formatted"] if st["status"] == "running" else st["status"]
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            lines.append(f"  {name:<17} [{bar}] {st['progress']:5.1f}% {seconds:>8}  {tail}")
        lines.append(
            f"  overall {snap['overall_progress']:5.1f}%  ETA {snap['overall_eta_formatted']:<7}"
            f" {snap['symbols_per_second']:8.1f} symbols/s  {snap['message']}"
        )
        up = f"\x1b[{self._lines}F" if self._lines else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self._lines = len(lines)

    def _line(self, snap: dict[str, Any]) -> None:
        """One line per stage whose status changed since the last line, in stage order, so no
        stage is skipped even when it started and ended between two snapshots."""
        if not self._header_written:
            self._header_written = True
            self.stream.write(self.header + "\n")
        if snap["current_stage"] is None and snap["status"] == "pending":
            self.stream.write("[  0.0%] queued - waiting for a worker\n")
        for name in STAGES:
            status = snap["stages"][name]["status"]
            if status == "pending" or self._printed.get(name) == status:
                continue
            self._printed[name] = status
            current = name == snap["current_stage"]
            detail = f" - {snap['message']} (ETA {snap['overall_eta_formatted']})" if current else ""
            self.stream.write(f"[{snap['overall_progress']:5.1f}%] {name} {status}{detail}\n")
        self.stream.flush()


TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("symbol", "Symbol", "{}"),
    ("sector", "Sector", "{}"),
    ("close", "Close", "{:.2f}"),
    ("tech_rating", "Rating", "{:.1f}"),
    ("signal", "Signal", "{}"),
    ("rsi_14", "RSI", "{:.1f}"),
    ("ret_21d", "21d", "{:+.1%}"),
    ("entry", "Entry", "{:.2f}"),
    ("stop", "Stop", "{:.2f}"),
    ("target", "Target", "{:.2f}"),
    ("position_size", "Shares", "{}"),
)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    text = fmt.format(value)
    return text[:22] if key == "sector" else text


SCREEN_COLUMNS = 4


def _screen_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}"


def render_table(rows: Sequence[dict[str, Any]], top: int | None) -> str:
    """The ranked rows as a text table; the first SCREEN_COLUMNS values of the screen follow the
    standard columns (``--format csv``/``json`` have them all)."""
    shown = list(rows if top is None else rows[:top])
    screen = list(((shown[0].get("screen") or {}).get("values") or {}) if shown else {})[:SCREEN_COLUMNS]
    header = ["#", *(title for _, title, _ in TABLE_COLUMNS), "Data", "Risk", *screen]
    body = [
        [
            str(n),
            *(_cell(r, key, fmt) for key, _, fmt in TABLE_COLUMNS),
            str(len(r["quality_flags"])),
            str(len(r["risk_flags"])),
            *(_screen_cell(r["screen"]["values"].get(name)) for name in screen),
        ]
        for n, r in enumerate(shown, 1)
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(header)]
    out = io.StringIO()
    for line in [header, *body]:
        out.write(
            "  ".join(
                cell.rjust(w) if i not in (1, 2, 5) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        out.write("\n")
    if len(rows) > len(shown):
        out.write(f"... {len(rows) - len(shown)} more rows (use --top 0, --format csv or --format json)\n")
    if shown:
        out.write("Data, Risk: the row's data-quality and risk flags (--format json names them)\n")
    return out.getvalue()
