"""Request bodies, bounded in size and in time before Django reads them.

Django's ASGI handler reads a request's whole body (into memory, then a temporary file past
2.5 MB) before any middleware runs, so ``BodySizeLimitMiddleware`` alone would answer 413 only
once an oversized upload had been received and stored. ``BodyLimitMiddleware``, the outermost
layer of HTTP in ``technic_project.asgi``, reads the body itself first:

* a ``Content-Length`` over ``TECHNIC_MAX_BODY_BYTES`` answers 413 ``PAYLOAD_TOO_LARGE``
  before a byte of the body is read, one that is not a number 400 ``BAD_REQUEST``;
* a body sent without a length (chunked) is counted as it arrives, and answers 413 as soon as
  it passes the limit;
* a body still incomplete ``TECHNIC_BODY_TIMEOUT`` seconds after the headers answers 408
  ``BODY_TIMEOUT``;

and then hands Django the body from memory. That holds under any ASGI server that passes the
body on as it arrives. daphne does not: it calls the application only once the whole body is in
(in a temporary file past 100 kB), however large it is declared. The ``web`` process therefore
runs daphne through ``technic_project.server``, whose requests apply these same rules
(``refusal``) while the bytes arrive.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.conf import settings
from rest_framework import status

from infra.errors import ApiError, error_body

Scope = dict[str, Any]
Message = dict[str, Any]


def payload_too_large(limit: int) -> ApiError:
    return ApiError(
        "PAYLOAD_TOO_LARGE",
        f"The request body is over {limit} bytes.",
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        ["Send a smaller body: scans are configured by a few fields, not data"],
        {"limit_bytes": limit},
    )


def bad_content_length(value: str) -> ApiError:
    return ApiError("BAD_REQUEST", f"Content-Length {value!r} is not a number of bytes.")


def body_timeout(seconds: int) -> ApiError:
    return ApiError(
        "BODY_TIMEOUT",
        f"The request body did not arrive within {seconds} s of the headers.",
        status.HTTP_408_REQUEST_TIMEOUT,
        ["Send the whole body right after the headers"],
        {"timeout_seconds": seconds},
    )


def length_refusal(values: list[bytes]) -> ApiError | None:
    """The refusal a request's ``Content-Length`` header values call for, or None: 400 for one
    that is not a number of bytes, 413 for one over TECHNIC_MAX_BODY_BYTES."""
    limit = settings.TECHNIC_MAX_BODY_BYTES
    for raw in values:
        text = raw.decode("latin-1").strip()
        if not (text.isascii() and text.isdigit()):
            return bad_content_length(text)
        if int(text) > limit:
            return payload_too_large(limit)
    return None


def refusal(error: ApiError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the answer to a refused request (the connection then closes)."""
    body = json.dumps(error_body(error.code, error.message, error.suggestions, error.details)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return error.status_code, headers, body


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """ASGI middleware for ``http`` scopes: reads the body within the size limit and the body
    timeout, answering 400, 408 or 413 (the application is then never called), and calls the
    application with the body in one message. A client that disconnects first gets nothing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = length_refusal([value for name, value in scope["headers"] if name.lower() == b"content-length"])
        body: bytes | None = None
        if error is None:
            try:
                async with asyncio.timeout(settings.TECHNIC_BODY_TIMEOUT):
                    body = await _read_body(receive, settings.TECHNIC_MAX_BODY_BYTES)
            except TimeoutError:
                error = body_timeout(settings.TECHNIC_BODY_TIMEOUT)
            except _BodyTooLarge:
                error = payload_too_large(settings.TECHNIC_MAX_BODY_BYTES)
        if error is not None:
            code, headers, content = refusal(error)
            await send({"type": "http.response.start", "status": code, "headers": headers})
            await send({"type": "http.response.body", "body": content})
            return
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole body; None if the client disconnected. Raises _BodyTooLarge past ``limit``."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise _BodyTooLarge
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that answers the body in one message, then what the client sends next
    (its ``http.disconnect``)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
