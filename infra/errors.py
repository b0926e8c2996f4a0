"""The API's one error shape, for every failure a client can see:

    {"error": {"code": "INVALID_SECTOR", "message": "...", "suggestions": ["..."], "details": {...}}}

``ApiError`` is raised by views and serializers' callers; ``exception_handler`` (DRF's
``EXCEPTION_HANDLER``) turns it, and DRF's own exceptions, into that shape; ``not_found`` and
``server_error`` are Django's ``handler404``/``handler500`` so even paths outside DRF answer JSON.
Pages people read in a browser (views marked ``html_errors``, see ``web.views.page``) get HTML
error pages instead. A server error never shows a stack trace: it is logged, and the client gets
a reference.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import kombu.exceptions
import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def error_body(
    code: str, message: str, suggestions: list[str] | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "suggestions": suggestions or [], "details": details or {}}}


class ApiError(exceptions.APIException):
    """A failure with the API's code, message, suggestions and details, and an HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        suggestions: list[str] | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status_code = code, message, status_code
        self.suggestions, self.details, self.headers = suggestions or [], details or {}, headers or {}


AUTH_SUGGESTIONS = [
    "Send 'Authorization: Token <token>' (POST /api/auth/token/ answers one)",
    "Clients that cannot set headers add '?ticket=<ticket>' to WebSocket and SSE URLs "
    "(POST /api/auth/ticket/ answers one)",
    "The web page logs in for a session",
]

# Redis not answering now: refused, timed out, loading its append-only file (BusyLoadingError is
# a ConnectionError), a read-only replica; and the broker (Redis) refusing a message's publication.
REDIS_UNAVAILABLE_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    kombu.exceptions.OperationalError,
)
REDIS_RETRY_AFTER_SECONDS = 5


def redis_failure(exc: BaseException) -> BaseException | None:
    """The Redis error ``exc`` is, or was raised from (Celery's result backend raises a
    RuntimeError from the ConnectionError, for one); None if it has nothing to do with Redis."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, REDIS_UNAVAILABLE_ERRORS):
            return cause
        cause = cause.__cause__
    return None


def redis_unavailable(err: BaseException) -> ApiError:
    """The answer for a request that needs Redis while it is unreachable: 503 with Retry-After.
    The cause is logged, not shown (it names hosts and ports)."""
    logger.warning("Redis unavailable: %s: %s", type(err).__name__, err)
    return ApiError(
        "REDIS_UNAVAILABLE",
        "This needs Redis (the broker, live progress and rate limits), which cannot be reached now.",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        [
            f"Try again in {REDIS_RETRY_AFTER_SECONDS} seconds: this path works again as soon as Redis does",
            "Results, history and diffs of finished scans, tokens and logging in stay available meanwhile",
            "Operators: check the Redis at REDIS_URL",
        ],
        {"service": "redis"},
        {"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
    )


def scan_not_found(scan_id: Any) -> ApiError:
    """The answer for a scan that does not exist or is not the caller's: the two look the same."""
    return ApiError(
        "SCAN_NOT_FOUND",
        f"No scan {scan_id} among your scans.",
        status.HTTP_404_NOT_FOUND,
        ["Check the scan_id that POST /scan/start answered", "GET /scan/history lists your scans"],
        {"scan_id": str(scan_id)},
    )


def screen_not_found(screen_id: Any) -> ApiError:
    """The answer for a saved screen that does not exist or is not the caller's."""
    return ApiError(
        "SCREEN_NOT_FOUND",
        f"No saved screen {screen_id} among your screens.",
        status.HTTP_404_NOT_FOUND,
        ["GET /api/screens/ lists your screens"],
        {"screen_id": str(screen_id)},
    )


def not_authenticated(message: str = "Authentication credentials were missing or invalid.") -> ApiError:
    return ApiError(
        "NOT_AUTHENTICATED",
        message,
        status.HTTP_401_UNAUTHORIZED,
        AUTH_SUGGESTIONS,
        headers={"WWW-Authenticate": "Token"},
    )


def json_response(error: ApiError) -> JsonResponse:
    """An ApiError as a plain Django response (views outside DRF)."""
    response = JsonResponse(
        error_body(error.code, error.message, error.suggestions, error.details), status=error.status_code
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


# DRF's own exceptions, by class: (code, suggestion).
_DRF_CODES: dict[type[exceptions.APIException], tuple[str, str]] = {
    exceptions.NotAuthenticated: ("NOT_AUTHENTICATED", AUTH_SUGGESTIONS[0]),
    exceptions.AuthenticationFailed: ("NOT_AUTHENTICATED", "Check the token; POST /api/auth/token/ answers one"),
    exceptions.PermissionDenied: ("PERMISSION_DENIED", "This needs another account or a staff account"),
    exceptions.NotFound: ("NOT_FOUND", "Check the path and the id"),
    exceptions.MethodNotAllowed: ("METHOD_NOT_ALLOWED", "See /api/docs/ for the methods of each path"),
    exceptions.NotAcceptable: ("NOT_ACCEPTABLE", "Accept application/json"),
    exceptions.UnsupportedMediaType: ("UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json"),
    exceptions.ParseError: ("MALFORMED_JSON", "Send a valid JSON object"),
    exceptions.Throttled: ("THROTTLED", "Wait for the time in Retry-After, then try again"),
    exceptions.ValidationError: ("VALIDATION_ERROR", "See details for each field"),
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with the body in the API's error shape (headers such as Retry-After and
    WWW-Authenticate are kept). Redis being unreachable answers 503 ``REDIS_UNAVAILABLE``; anything
    else that is not an APIException is left to Django (500)."""
    failure = redis_failure(exc)
    if failure is not None:
        exc = redis_unavailable(failure)
    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.suggestions, exc.details)
        return Response(body, status=exc.status_code, headers=exc.headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code, suggestion = next(
        (value for cls, value in _DRF_CODES.items() if isinstance(exc, cls)),
        (response.status_text.upper().replace(" ", "_"), ""),
    )
    if isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith("CSRF Failed"):
        # SessionAuthentication's CSRF check; DRF raises a plain PermissionDenied for it.
        code, suggestion = "CSRF_FAILED", "Send the csrftoken cookie's value in the X-CSRFToken header"
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        details = {"fields": response.data} if isinstance(response.data, dict) else {"errors": response.data}
        message = "The request is not valid."
    else:
        message = str(response.data.get("detail", "")) if isinstance(response.data, dict) else str(response.data)
    if isinstance(exc, exceptions.Throttled):
        wait: float | None = exc.wait  # type: ignore[attr-defined]  # the stubs leave out Throttled.wait
        if wait is not None:
            details["retry_after_seconds"] = int(wait + 0.999)
    response.data = error_body(code, message, [suggestion] if suggestion else [], details)
    return response


def is_page(request: HttpRequest) -> bool:
    """Whether the request was routed to a page for people (a view marked ``html_errors``)."""
    match = getattr(request, "resolver_match", None)
    return match is not None and getattr(match.func, "html_errors", False)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: unknown paths and malformed ids answer JSON too; pages answer 404.html."""
    if is_page(request):
        return defaults.page_not_found(request, exception or Exception())
    body = error_body("NOT_FOUND", f"Nothing at {request.path}.", ["See /api/docs/ for the API's paths"])
    return JsonResponse(body, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: no stack trace, a reference to find the logged one (pages answer 500.html)."""
    reference = uuid.uuid4().hex[:12]
    logger.error("server error %s on %s %s", reference, request.method, request.path, exc_info=True)
    if is_page(request):
        return defaults.server_error(request)
    body = error_body(
        "SERVER_ERROR",
        "The server failed to answer this request; nothing was changed by the failure itself.",
        ["Try again; if it persists, give the operator this reference"],
        {"reference": reference},
    )
    return JsonResponse(body, status=500)
