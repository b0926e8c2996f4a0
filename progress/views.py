"""Progress over HTTP: the snapshot (``GET /scan/progress/<id>``) and Server-Sent Events
(``GET /scan/sse/<id>``, alias ``/scan/stream/<id>``).

The event stream starts with ``retry: 2000``, then sends events
``id: <seq>`` / ``event: progress|terminal`` / ``data: <snapshot JSON with "type">``, coalesced
as on the WebSocket (``progress.consumers.Outbox``), a ``: keepalive`` comment after
``KEEPALIVE_SECONDS`` of silence, and ends after the terminal event. A client resuming with
``Last-Event-ID`` gets the current full snapshot only if it is newer than that id; one that
already has the terminal event gets 204, which tells ``EventSource`` to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from progress.auth import arequest_user
from progress.consumers import Outbox, Snapshot, owned_scan, read_snapshot
from progress.store import current_snapshot, group_name, wire
from progress.tracker import TERMINAL
from scanner.models import Scan

RETRY_MILLISECONDS = 2000
KEEPALIVE_SECONDS = 15.0

AUTH_SUGGESTIONS = [
    "Send 'Authorization: Token <token>' (POST /api/auth/token/ answers one)",
    "Clients that cannot set headers add '?token=<token>' to WebSocket and SSE URLs",
    "The web page logs in for a session",
]


def error_body(code: str, message: str, suggestions: list[str], details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "suggestions": suggestions, "details": details}}


def scan_not_found(scan_id: UUID) -> JsonResponse:
    body = error_body(
        "SCAN_NOT_FOUND",
        f"No scan {scan_id} among your scans.",
        ["Check the scan_id that POST /scan/start answered", "GET /scan/history lists your scans"],
        {"scan_id": str(scan_id)},
    )
    return JsonResponse(body, status=404)


class ScanProgressView(APIView):
    """The scan's current snapshot; 404 ``SCAN_NOT_FOUND`` unless it is the caller's."""

    def get(self, request: Request, scan_id: UUID) -> Response | JsonResponse:
        scan = Scan.objects.filter(pk=scan_id, owner_id=request.user.pk).first()
        if scan is None:
            return scan_not_found(scan_id)
        return Response(current_snapshot(scan))

    def handle_exception(self, exc: Exception) -> Response:
        """DRF's answer (status, ``WWW-Authenticate``) with the body in the API's error shape."""
        response = super().handle_exception(exc)
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        if response.status_code == 401:
            code, suggestions = "NOT_AUTHENTICATED", AUTH_SUGGESTIONS
        else:
            code, suggestions = response.status_text.upper().replace(" ", "_"), []
        response.data = error_body(code, str(detail), suggestions, {})
        return response


async def scan_events(request: HttpRequest, scan_id: UUID) -> HttpResponse:
    """The scan's progress as Server-Sent Events; 401 and 404 (JSON) are answered before streaming."""
    user = await arequest_user(request)
    if not user.is_authenticated:
        body = error_body(
            "NOT_AUTHENTICATED", "Authentication credentials were missing or invalid.", AUTH_SUGGESTIONS, {}
        )
        response: HttpResponse = JsonResponse(body, status=401)
        response["WWW-Authenticate"] = "Token"
        return response
    scan = await owned_scan(user, scan_id)
    if scan is None:
        return scan_not_found(scan_id)
    after_seq = _last_event_id(request)
    snap = await read_snapshot(scan)
    if after_seq is not None and snap["status"] in TERMINAL and after_seq >= snap["seq"]:
        return HttpResponse(status=204)
    response = StreamingHttpResponse(_events(scan, after_seq), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _last_event_id(request: HttpRequest) -> int | None:
    """The seq the client last received; None when absent or not a number (it then gets the snapshot)."""
    value = request.headers.get("Last-Event-ID", "").strip()
    return int(value) if value.isdigit() else None


async def _events(scan: Scan, after_seq: int | None) -> AsyncIterator[str]:
    """The event stream. Subscribes, then reads the snapshot, then writes ``retry:``; unsubscribes
    however it ends (terminal event, client gone: the ASGI handler cancels it, or an error)."""
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
        written_at = time.monotonic()
        while True:
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
        await layer.group_discard(group, channel)


def _event(message: Snapshot) -> str:
    return f"id: {message['seq']}\nevent: {message['type']}\ndata: {message['text']}\n\n"
