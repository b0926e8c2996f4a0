"""Argument types the management commands share."""

from __future__ import annotations

import sys
from argparse import ArgumentParser, ArgumentTypeError
from datetime import date
from typing import NoReturn, TypeVar

P = TypeVar("P", bound=ArgumentParser)


def iso_date(value: str) -> date:
    """An argparse type: a YYYY-MM-DD date, else a message naming the value."""
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from err


def one_line_errors(parser: P, command: str) -> P:
    """Make ``parser`` report a usage error as one line naming the command's help (exit
    status 2) instead of argparse's usage dump."""

    def one_line_error(message: str) -> NoReturn:
        sys.stderr.write(f"CommandError: {message} (see: manage.py {command} --help)\n")
        raise SystemExit(2)

    parser.error = one_line_error  # type: ignore[method-assign]  # argparse has no hook for its error output
    return parser
