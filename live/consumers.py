"""WebSocket ``/scan/ws/<scan_id>``: the scan's snapshot on connect, then its changes, then the end.

Every message is the progress snapshot of PRODUCT.md plus ``"type"``: ``"progress"``, or
``"terminal"`` for the last one (status completed, failed or cancelled), after which the
server closes with 1000. A connection is refused before the handshake completes with 4401
(not authenticated) or 4404 (no such scan, or not the user's: staff included); ASGI servers
such as daphne turn a refusal into an HTTP 403 answer to the upgrade request. A user already
holding TECHNIC_MAX_LIVE_CONNECTIONS live connections (``live.connections``) is accepted,
then closed at once with 4429.

``Outbox`` is the coalescing rule shared with the SSE stream (``live.views``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from live.connections import CLOSE_TOO_MANY, RENEW_SECONDS, Lease, alive_acquire, alive_release, alive_renew
from progress.store import current_snapshot, group_name, wire
from progress.tracker import TERMINAL
from scanner.models import Scan

logger = logging.getLogger(__name__)

Snapshot = dict[str, Any]

COALESCE_SECONDS = 0.1
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class Outbox:
    """Which snapshots one connection sends, and when (no I/O: the caller sends).

    Drops a snapshot whose ``seq`` is not above every one seen (pushes from different workers
    may arrive out of order). Sends at once the first one, any that changes the scan status,
    the current stage or a stage's status, and plain updates at most every ``window`` seconds;
    a plain update inside the window waits as the pending one (a newer one replaces it) until
    ``flush_at()``. Nothing goes out after a terminal snapshot.
    """

    def __init__(
        self,
        after_seq: int | None = None,
        window: float = COALESCE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._clock = clock
        self._seen_seq = -1 if after_seq is None else after_seq
        self._last: Snapshot | None = None
        self._pending: Snapshot | None = None
        self._sent_at = -math.inf
        self.finished = False

    def offer(self, snap: Snapshot) -> Snapshot | None:
        """Returns ``snap`` if it is to be sent now (and counts it as sent), else None."""
        if self.finished or snap["seq"] <= self._seen_seq:
            return None
        self._seen_seq = snap["seq"]
        if self._last is None or _milestone(self._last, snap) or self._clock() >= self._sent_at + self._window:
            return self._sent(snap)
        self._pending = snap
        return None

    def flush_at(self) -> float | None:
        """When the pending update is due (on ``clock``), or None if there is none."""
        return None if self._pending is None else self._sent_at + self._window

    def take_due(self) -> Snapshot | None:
        """The pending update if its time has come (counted as sent), else None."""
        due = self.flush_at()
        if self._pending is None or due is None or self._clock() < due:
            return None
        return self._sent(self._pending)

    def _sent(self, snap: Snapshot) -> Snapshot:
        self._last, self._pending, self._sent_at = snap, None, self._clock()
        self.finished = snap["status"] in TERMINAL
        return snap


def _milestone(before: Snapshot, after: Snapshot) -> bool:
    """Whether ``after`` changes the scan status, the current stage or any stage's status."""
    return (
        before["status"] != after["status"]
        or before["current_stage"] != after["current_stage"]
        or {name: st["status"] for name, st in before["stages"].items()}
        != {name: st["status"] for name, st in after["stages"].items()}
    )


async def owned_scan(user: Any, scan_id: UUID) -> Scan | None:
    """``user``'s scan ``scan_id``; None if it does not exist, is someone else's, or the user is anonymous."""
    if not user.is_authenticated:
        return None
    return await Scan.objects.filter(pk=scan_id, owner_id=user.pk).afirst()


async def read_snapshot(scan: Scan) -> Snapshot:
    """``current_snapshot`` off the event loop (it reads Redis, not the database, so any thread will do)."""
    return await sync_to_async(current_snapshot, thread_sensitive=False)(scan)


class ScanProgressConsumer(AsyncWebsocketConsumer):
    """Joins the scan's group and forwards its ``progress.snapshot`` messages through an ``Outbox``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group: str | None = None
        self.outbox = Outbox()
        self.flusher: asyncio.Task[None] | None = None
        self.lease: Lease | None = None
        self.renewer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        scan = await owned_scan(user, self.scope["url_route"]["kwargs"]["scan_id"])
        if scan is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.lease = await alive_acquire(user.pk)
        if self.lease is None:
            # Accepted first, so that the client sees the code (a refusal before the handshake
            # reaches it as a bare HTTP 403).
            await self.accept()
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.renewer = asyncio.create_task(self._renew())
        self.renewer.add_done_callback(_log_renew_failure)
        # Subscribe before reading the snapshot, so no push falls between the two; pushes
        # older than the snapshot are then dropped by seq.
        self.group = group_name(scan.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send(self.outbox.offer(wire(await read_snapshot(scan))))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Pushed snapshots skip the base class's per-message ``close_old_connections`` (a hop
        to the thread pool for every message of every client: most of daphne's CPU during a
        scan with 50 clients); their handler does not touch the database."""
        if message["type"] == "progress.snapshot":
            await self.progress_snapshot(message)
        else:
            await super().dispatch(message)

    async def progress_snapshot(self, event: dict[str, Any]) -> None:
        """A pushed snapshot: sent now, as the pending update, or dropped as stale."""
        await self._send(self.outbox.offer(event["message"]))
        if self.outbox.flush_at() is not None and self.flusher is None:
            self.flusher = asyncio.create_task(self._flush())
            self.flusher.add_done_callback(_log_failure)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Clients have nothing to send on this socket; what they send (pings included) is ignored."""

    async def disconnect(self, code: int) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
        if self.renewer is not None:
            self.renewer.cancel()
        lease, self.lease = self.lease, None
        if lease is not None:
            await alive_release(lease)
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _flush(self) -> None:
        """Sends the pending update when its window ends, so the latest state always arrives."""
        while (due := self.outbox.flush_at()) is not None:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._send(self.outbox.take_due())
        self.flusher = None

    async def _renew(self) -> None:
        """Keeps this connection's place in its user's count of live connections."""
        while self.lease is not None:
            await asyncio.sleep(RENEW_SECONDS)
            await alive_renew(self.lease)

    async def _send(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        await self.send(text_data=snap["text"])
        if self.outbox.finished:
            await self.close(code=1000)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("sending a pending progress update failed", exc_info=task.exception())


def _log_renew_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("renewing a live connection's lease failed", exc_info=task.exception())
