"""Progress over HTTP: the snapshot (``GET /scan/progress/<id>``) and Server-Sent Events
(``GET /scan/sse/<id>``, alias ``/scan/stream/<id>``).

The event stream starts with ``retry: 2000``, then sends events
``id: <seq>`` / ``event: progress|terminal`` / ``data: <snapshot JSON with "type">``, coalesced
as on the WebSocket (``live.consumers.Outbox``), a ``: keepalive`` comment after
``KEEPALIVE_SECONDS`` of silence, and ends after the terminal event. A client resuming with
``Last-Event-ID`` gets the current full snapshot only if it is newer than that id; one that
already has the terminal event gets 204, which tells ``EventSource`` to stop reconnecting. A user
already holding TECHNIC_MAX_LIVE_CONNECTIONS live connections (``live.connections``) gets 429
``TOO_MANY_CONNECTIONS``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from uuid import UUID

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from infra.errors import json_response, not_authenticated, scan_not_found
from live.auth import arequest_user
from live.connections import RENEW_SECONDS, Lease, alive_acquire, alive_release, alive_renew, too_many_connections
from live.consumers import Outbox, Snapshot, owned_scan, read_snapshot
from live.openapi import ProgressSnapshotSerializer
from progress.store import current_snapshot, group_name, wire
from progress.tracker import TERMINAL
from scanner.models import Scan

RETRY_MILLISECONDS = 2000
KEEPALIVE_SECONDS = 15.0


class ScanProgressView(APIView):
    """The scan's current snapshot; 404 ``SCAN_NOT_FOUND`` unless it is the caller's."""

    @extend_schema(responses=ProgressSnapshotSerializer)
    def get(self, request: Request, scan_id: UUID) -> Response:
        scan = Scan.objects.filter(pk=scan_id, owner_id=request.user.pk).first()
        if scan is None:
            raise scan_not_found(scan_id)
        return Response(current_snapshot(scan))


async def scan_events(request: HttpRequest, scan_id: UUID) -> HttpResponseBase:
    """The scan's progress as Server-Sent Events; 401 and 404 (JSON) are answered before streaming."""
    user = await arequest_user(request)
    if not user.is_authenticated:
        return json_response(not_authenticated())
    scan = await owned_scan(user, scan_id)
    if scan is None:
        return json_response(scan_not_found(scan_id))
    after_seq = _last_event_id(request)
    snap = await read_snapshot(scan)
    if after_seq is not None and snap["status"] in TERMINAL and after_seq >= snap["seq"]:
        return HttpResponse(status=204)
    # Given back when the stream ends (or, if the client leaves before it starts, when it lapses).
    lease = await alive_acquire(user.pk)
    if lease is None:
        return json_response(too_many_connections())
    response = StreamingHttpResponse(_events(scan, after_seq, lease), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _last_event_id(request: HttpRequest) -> int | None:
    """The seq the client last received; None when absent or not a number (it then gets the snapshot)."""
    value = request.headers.get("Last-Event-ID", "").strip()
    return int(value) if value.isdigit() else None


async def _events(scan: Scan, after_seq: int | None, lease: Lease) -> AsyncIterator[str]:
    """The event stream. Subscribes, then reads the snapshot, then writes ``retry:``; unsubscribes
    and gives the connection's lease back however it ends (terminal event, client gone: the ASGI
    handler cancels it, or an error). The lease is renewed on the way (a keepalive wakes the loop
    at least every KEEPALIVE_SECONDS)."""
    layer = get_channel_layer()
    group = group_name(scan.id)
    channel = await layer.new_channel()
    # One receive stays pending across timeouts: cancelling the pub/sub layer's receive()
    # unsubscribes the channel, and pushes arriving until the next receive() would be lost.
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        await layer.group_add(group, channel)
        outbox = Outbox(after_seq=after_seq)
        snap = outbox.offer(wire(await read_snapshot(scan)))
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        written_at = renewed_at = time.monotonic()
        while True:
            if time.monotonic() >= renewed_at + RENEW_SECONDS:
                await alive_renew(lease)
                renewed_at = time.monotonic()
            if snap is not None:
                yield _event(snap)
                if outbox.finished:
                    return
                written_at = time.monotonic()
            flush_at = outbox.flush_at()
            deadline = min(written_at + KEEPALIVE_SECONDS, math.inf if flush_at is None else flush_at)
            done, _ = await asyncio.wait({receiving}, timeout=max(0.0, deadline - time.monotonic()))
            if done:
                snap = outbox.offer(receiving.result()["message"]) or outbox.take_due()
                receiving = asyncio.ensure_future(layer.receive(channel))
                continue
            snap = outbox.take_due()
            if snap is None and time.monotonic() >= written_at + KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                written_at = time.monotonic()
    finally:
        receiving.cancel()
        await asyncio.wait({receiving})
        try:
            await layer.group_discard(group, channel)
        finally:
            await alive_release(lease)


def _event(message: Snapshot) -> str:
    return f"id: {message['seq']}\nevent: {message['type']}\ndata: {message['text']}\n\n"
