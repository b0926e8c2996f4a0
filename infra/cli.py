"""Argument types the management commands share."""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import date


def iso_date(value: str) -> date:
    """An argparse type: a YYYY-MM-DD date, else a message naming the value."""
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from err
