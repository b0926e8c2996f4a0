"""The ``web`` process: daphne, with request bodies bounded while they arrive.

``python -m technic_project.server [daphne's options] technic_project.asgi:application``
takes exactly daphne's command line (``--help``). daphne hands a request to the application
only when its whole body has arrived (into a temporary file past 100 kB), and has no limit of
its own: a declared 150 MB upload was received and stored before the 413, and a
``Content-Length`` of twenty digits kept the connection waiting for bytes that never came.
Here each request applies ``infra.bodies``' rules as its bytes arrive:

* a declared ``Content-Length`` over ``TECHNIC_MAX_BODY_BYTES`` answers 413 at once, after the
  headers, without reading the body;
* a body sent without a length (chunked) answers 413 as soon as it passes the limit;
* a body still incomplete ``TECHNIC_BODY_TIMEOUT`` seconds after the headers answers 408;

each with the API's JSON error body and ``Connection: close``. The body is kept in memory
(it is at most the limit). After a refusal the connection reads and drops what the client
still sends for ``LINGER_SECONDS``, then closes: closing at once, with the client's bytes
unread, would reset the connection and the client could lose the answer.

daphne's command line has no option for the request class, so ``main`` replaces the HTTP
factory its ``Server`` builds (a module attribute of ``daphne.server``) with one whose
channels make ``BoundedRequest``; nothing else of daphne changes.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import daphne.server  # first: it installs the asyncio reactor the rest of Twisted must use
import django
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from django.conf import settings
from twisted.internet import reactor as _reactor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "technic_project.settings")
django.setup()  # the API's errors below import DRF, which needs the app registry

from infra.bodies import body_timeout, length_refusal, payload_too_large, refusal  # noqa: E402
from infra.errors import ApiError  # noqa: E402

logger = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
# Twisted types the reactor by zope interfaces, whose methods mypy reads as taking no self.
reactor: Any = _reactor
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large"}


class BoundedRequest(WebRequest):
    """daphne's request, refusing a body over the limit or too slow as the bytes arrive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._received = 0
        self._refused = False
        self._deadline: Any = None
        super().__init__(*args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        """Called once the headers are in, with the declared length (None for chunked)."""
        self.content = io.BytesIO()
        error = length_refusal(self.requestHeaders.getRawHeaders(b"content-length") or [])
        if error is not None:
            self._refuse(error)
        elif length != 0:
            self._deadline = reactor.callLater(settings.TECHNIC_BODY_TIMEOUT, self._body_timed_out)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > settings.TECHNIC_MAX_BODY_BYTES:
            self._refuse(payload_too_large(settings.TECHNIC_MAX_BODY_BYTES))
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Called once the whole body is in: daphne hands the request to the application."""
        self._cancel_deadline()
        if not self._refused:
            super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)

    def _body_timed_out(self) -> None:
        self._deadline = None
        self._refuse(body_timeout(settings.TECHNIC_BODY_TIMEOUT))

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _refuse(self, error: ApiError) -> None:
        """Answer ``error`` on the raw connection (the request line is not parsed into this
        request yet, so Twisted's response methods cannot be used), then linger and close."""
        self._refused = True
        self._cancel_deadline()
        # Else Twisted would answer "100 Continue" after this answer.
        self.requestHeaders.removeHeader(b"expect")
        status, headers, body = refusal(error)
        reason = _REASONS.get(status, b"Error")
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(b"%s: %s\r\n" % pair for pair in headers)
        transport = self.channel.transport
        transport.write(head + b"\r\n" + body)
        # A half-close (TCP) sends the answer and keeps reading; a TLS transport has none.
        getattr(transport, "loseWriteConnection", transport.loseConnection)()
        reactor.callLater(LINGER_SECONDS, transport.abortConnection)
        logger.info("refused a request from %s: %s %s", self.client.host, status, error.code)


class BoundedHTTPFactory(HTTPFactory):
    """daphne's HTTP factory whose connections make ``BoundedRequest``."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        return protocol


def main() -> None:
    daphne.server.HTTPFactory = BoundedHTTPFactory
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
