"""OpenAPI description of live progress: the snapshot payload (``progress.tracker`` builds it;
these serializers only document it) and the Server-Sent Events routes, which are plain Django
views drf-spectacular cannot see, added by the postprocessing hook ``add_event_stream_paths``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from progress.tracker import STAGES
from scanner.models import ScanStatus

# A stage's statuses are a scan's.
STATUSES = ScanStatus.choices


class ProgressStageSerializer(serializers.Serializer):
    weight = serializers.FloatField(help_text="share of overall progress, 0-1")
    progress = serializers.FloatField(help_text="percent, 0-100")
    status = serializers.ChoiceField(choices=STATUSES)
    seconds = serializers.FloatField(allow_null=True, help_text="time in the stage; null until it starts")
    current = serializers.IntegerField()
    total = serializers.IntegerField()


class ProgressStagesSerializer(serializers.Serializer):
    universe_loading = ProgressStageSerializer()
    data_fetching = ProgressStageSerializer()
    symbol_scanning = ProgressStageSerializer()
    finalization = ProgressStageSerializer()


class ProgressCacheSerializer(serializers.Serializer):
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    hit_rate = serializers.FloatField(allow_null=True, help_text="percent; null before any lookup")
    available = serializers.BooleanField(help_text="false once the price cache could not be reached (scan uncached)")


class ProgressSnapshotSerializer(serializers.Serializer):
    """A scan's progress (REST, and every WebSocket and SSE message, which add ``type``)."""

    scan_id = serializers.UUIDField()
    seq = serializers.IntegerField(help_text="increases with every update")
    status = serializers.ChoiceField(choices=STATUSES)
    current_stage = serializers.ChoiceField(choices=STAGES, allow_null=True)
    stages = ProgressStagesSerializer()
    overall_progress = serializers.FloatField(help_text="percent; never decreases, 100 only when completed")
    stage_progress = serializers.FloatField()
    current = serializers.IntegerField()
    total = serializers.IntegerField()
    overall_eta = serializers.FloatField(help_text="seconds")
    overall_eta_formatted = serializers.CharField()
    stage_eta = serializers.FloatField(help_text="seconds")
    stage_eta_formatted = serializers.CharField()
    stage_throughput = serializers.FloatField(help_text="units per second in the current stage")
    symbols_per_second = serializers.FloatField()
    elapsed_seconds = serializers.FloatField()
    message = serializers.CharField(allow_blank=True)
    cache = ProgressCacheSerializer()
    updated_at = serializers.FloatField(required=False, help_text="epoch seconds when the snapshot was built")
    results_url = serializers.CharField(required=False, help_text="once the scan is finished")


def _event_stream_operation(operation_id: str) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "operationId": operation_id,
        "summary": "A scan's progress as Server-Sent Events",
        "description": (
            "`retry: 2000`, then events `id: <seq>`, `event: progress|terminal`, `data: <snapshot JSON with "
            '"type">` (the ProgressSnapshot schema), a `: keepalive` comment after 15 s of silence; the stream '
            "ends after the terminal event. A client resuming with `Last-Event-ID` gets the current snapshot "
            "only if it is newer."
        ),
        "tags": ["scan"],
        "parameters": [
            {"name": "scan_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
                "description": "the last seq received",
            },
        ],
        "security": [{"tokenAuth": []}, {"cookieAuth": []}, {"ticketQuery": []}, {"tokenQuery": []}],
        "responses": {
            "200": {
                "description": "the event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "204": {"description": "the client already has the terminal event: stop reconnecting"},
            "401": {"description": "NOT_AUTHENTICATED", **error},
            "404": {"description": "SCAN_NOT_FOUND (or not the caller's), or a malformed scan_id", **error},
            "429": {
                "description": "TOO_MANY_CONNECTIONS: the user holds the most live WebSocket and SSE connections "
                "allowed (with Retry-After)",
                **error,
            },
            "503": {"description": "REDIS_UNAVAILABLE: live progress needs Redis (with Retry-After)", **error},
        },
    }


def add_event_stream_paths(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: documents ``/scan/sse/{scan_id}`` and its alias
    ``/scan/stream/{scan_id}``, and the ``?ticket=`` and ``?token=`` schemes that clients without
    headers use."""
    result["paths"]["/scan/sse/{scan_id}"] = {"get": _event_stream_operation("scan_sse_retrieve")}
    result["paths"]["/scan/stream/{scan_id}"] = {"get": _event_stream_operation("scan_stream_retrieve")}
    result["components"]["securitySchemes"]["tokenQuery"] = {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the API token, for WebSocket and SSE clients that cannot set headers (prefer a ticket)",
    }
    result["components"]["securitySchemes"]["ticketQuery"] = {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "a ticket from POST /api/auth/ticket/, valid 60 s: keeps the token out of URLs",
    }
    return result
