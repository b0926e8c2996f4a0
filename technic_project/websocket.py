"""WebSocket paths that no route matches.

Channels' ``URLRouter`` raises ``ValueError`` for them, which the server answers as a 500 with
a traceback in its log. ``refuse_unrouted``, the router's last route, closes them before the
handshake with 4404, the code of an unknown scan (daphne turns that refusal into an HTTP 403).
"""

from __future__ import annotations

from typing import Any, cast

from django.urls import URLPattern, re_path

from live.consumers import CLOSE_NOT_FOUND


async def refuse_unrouted(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI application that refuses the connection it is given with ``CLOSE_NOT_FOUND``."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND})


# Django types a pattern's callback as a view; Channels' router takes any ASGI application.
unrouted: URLPattern = re_path(r"", cast(Any, refuse_unrouted), name="ws-unrouted")
