"""Sending progress to the channel layer from synchronous code (Celery workers, commands).

``async_to_sync`` would start an event loop and open a Redis connection for every message;
instead each process keeps one event loop (and its connection) in a daemon thread and hands it
the coroutines. A push that fails is logged and dropped: the snapshot is in
Redis either way, and REST, SSE and a reconnecting WebSocket read it from there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 2.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    """This process's sending loop (a forked child starts its own)."""
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            threading.Thread(target=_loop.run_forever, name="progress-push", daemon=True).start()
        return _loop


def group_send(group: str, message: dict[str, Any]) -> bool:
    """Send ``message`` to every consumer of ``group``; returns whether it was sent."""
    layer = get_channel_layer()
    if layer is None:
        logger.warning("no channel layer configured: progress of %s not pushed", group)
        return False
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _event_loop())
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS)
    except Exception as err:  # noqa: BLE001  (any failure of the layer: log it, the scan goes on)
        future.cancel()
        logger.warning("progress push to %s failed: %s: %s", group, type(err).__name__, err)
        return False
    return True
