"""The API's JSON parser: DRF's, with a nesting limit checked before the body is decoded.

Python's ``json`` recurses once per level of nesting, so a body of a few thousand ``[`` raises
``RecursionError`` (a 500 and a long traceback in the log) instead of a parse error.
``nesting_depth`` measures the depth in one pass over the bytes, skipping strings, and a body
nested deeper than ``TECHNIC_MAX_JSON_DEPTH`` answers 400 ``JSON_TOO_DEEP`` without being
decoded. The body's size is bounded before it gets here (``TECHNIC_MAX_BODY_BYTES``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions, parsers

# A module import: errors imports DRF's views, whose settings import this module.
from infra import errors

# A string (possibly unterminated: it then runs to the end) or one bracket. Possessive, so a
# string is matched once whatever it holds: the scan stays linear in the body's length.
_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)
_OPENING = frozenset(b"[{")


def nesting_depth(data: bytes, stop_above: int | None = None) -> int:
    """How deeply ``data``'s arrays and objects nest (0 for a scalar); brackets inside strings
    do not count. Stops counting once the depth passes ``stop_above``. Well-formedness is not
    checked: that is the decoder's job."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        token = match.group()[0]
        if token in _OPENING:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    break
        elif token != ord('"'):
            depth = max(depth - 1, 0)
    return deepest


def too_deep(limit: int) -> errors.ApiError:
    return errors.ApiError(
        "JSON_TOO_DEEP",
        f"The JSON body nests arrays and objects more than {limit} levels deep.",
        suggestions=['Scan options are one object of fields, e.g. {"sectors": ["Energy"], "max_symbols": 50}'],
        details={"max_depth": limit},
    )


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser behind the nesting limit; ``RecursionError`` never escapes it."""

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        data = stream.read() if stream is not None else b""
        limit = settings.TECHNIC_MAX_JSON_DEPTH
        if nesting_depth(data, stop_above=limit) > limit:
            raise too_deep(limit)
        try:
            return super().parse(io.BytesIO(data), media_type, parser_context)
        except RecursionError as err:  # only if the limit is set above what the interpreter allows
            raise exceptions.ParseError("JSON parse error - nested too deeply") from err
