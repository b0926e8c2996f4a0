"""A client of the SSE stream through the real ASGI application, its body read chunk by chunk."""

from __future__ import annotations

import json
from typing import Any

from asgiref.testing import ApplicationCommunicator

from technic_project.asgi import application

TIMEOUT = 10  # seconds any expected output may take on a loaded machine


class EventStream:
    """One GET through the ASGI application, its body read chunk by chunk."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        url, _, query = path.partition("?")
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": url,
            "raw_path": url.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"localhost"), *(headers or [])],
            "client": ("127.0.0.1", 50000),
            "server": ("localhost", 80),
        }
        self.app = ApplicationCommunicator(application, scope)
        self.buffer = ""
        self.ended = False

    async def open(self) -> tuple[int, dict[str, str]]:
        await self.app.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.app.receive_output(TIMEOUT)
        assert start["type"] == "http.response.start"
        return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}

    async def block(self) -> str:
        """The next block up to a blank line (an event, ``retry:`` or a comment)."""
        while "\n\n" not in self.buffer:
            assert not self.ended, f"the stream ended; left over: {self.buffer!r}"
            message = await self.app.receive_output(TIMEOUT)
            assert message["type"] == "http.response.body"
            self.buffer += message.get("body", b"").decode()
            self.ended = not message.get("more_body", False)
        block, self.buffer = self.buffer.split("\n\n", 1)
        return block

    async def event(self) -> dict[str, Any]:
        """The next event as its snapshot plus ``id`` and ``event``, skipping comments and retry."""
        while True:
            fields = dict(line.split(": ", 1) for line in (await self.block()).split("\n"))
            if "data" in fields:
                return {"id": int(fields["id"]), "event": fields["event"], **json.loads(fields["data"])}

    async def body(self) -> bytes:
        """The rest of the body (for answers that do not stream)."""
        chunks = []
        while not self.ended:
            message = await self.app.receive_output(TIMEOUT)
            chunks.append(message.get("body", b""))
            self.ended = not message.get("more_body", False)
        return b"".join(chunks)

    async def disconnect(self) -> None:
        await self.app.send_input({"type": "http.disconnect"})
        await self.app.wait(TIMEOUT)


def token_header(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {token}".encode())]
