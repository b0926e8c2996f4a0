"""What every request goes through before and after its view, outside DRF.

``BodySizeLimitMiddleware`` refuses a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (settings set
it to ``TECHNIC_MAX_BODY_BYTES``) with 413 before any view runs (under ASGI,
``infra.bodies`` refuses it earlier still, before Django reads it). ``JsonErrorMiddleware`` gives
any error answer that is not JSON yet (Django's own 400 and 403 pages, a 405 from a Django view,
an HTML error page of the docs view) the API's error body, except on the pages people read in a
browser (views marked ``html_errors``, see ``web.views.page``), which keep their HTML error pages.
``RedisUnavailableMiddleware`` answers 503 when a view outside DRF finds Redis unreachable.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from infra.bodies import bad_content_length, payload_too_large
from infra.errors import (
    error_body,
    is_page,
    json_response,
    redis_failure,
    redis_unavailable,
)

# Codes for Django's own error answers; the same names DRF's answers get in infra.errors.
_CODES = {
    400: "BAD_REQUEST",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    500: "SERVER_ERROR",
}


class BodySizeLimitMiddleware(MiddlewareMixin):
    """413 ``PAYLOAD_TOO_LARGE`` for a body over the limit, 400 ``BAD_REQUEST`` for a
    Content-Length that is not a number.

    Reading ``request.body`` makes Django apply its limit: to the declared Content-Length before
    reading anything, then to the bytes actually received when the length is absent or
    understated (chunked). Bodies under the limit are then read from memory by the view.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not (length.isascii() and length.isdigit()):
            return json_response(bad_content_length(length))
        try:
            request.body  # noqa: B018  (read for Django's size check)
        except RequestDataTooBig:
            return json_response(payload_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
        return None


class JsonErrorMiddleware(MiddlewareMixin):
    """An error answer (4xx, 5xx) that is not JSON gets the API's error body, with its status,
    headers (``Allow``, ``Retry-After``, …) and cookies kept. Streaming answers are left alone, and
    so are the error pages of browser pages and Django's technical error pages when ``DEBUG`` is
    on. Goes first in ``MIDDLEWARE`` so that it sees the answers of every other middleware."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code < 400
            or not isinstance(response, HttpResponse)  # streaming
            or settings.DEBUG
            or is_page(request)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        code = _CODES.get(response.status_code, response.reason_phrase.upper().replace(" ", "_"))
        response.content = json.dumps(error_body(code, f"{response.status_code} {response.reason_phrase}."))
        response["Content-Type"] = "application/json"
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response


class RedisUnavailableMiddleware(MiddlewareMixin):
    """503 ``REDIS_UNAVAILABLE`` (with Retry-After) for a view outside DRF that raised because
    Redis cannot be reached (DRF's views get the same answer from ``errors.exception_handler``);
    pages answer the 503.html page."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        failure = redis_failure(exception)
        if failure is None:
            return None
        error = redis_unavailable(failure)
        if is_page(request):
            context = {"message": error.message, "suggestions": error.suggestions}
            response = render(request, "503.html", context, status=error.status_code)
            response["Retry-After"] = error.headers["Retry-After"]
            return response
        return json_response(error)
