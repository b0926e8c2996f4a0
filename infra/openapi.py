"""The OpenAPI schema's shared parts: the error body every failure has, and the error answers
the platform gives on any operation, whatever its view.

``AutoSchema`` is DRF's ``DEFAULT_SCHEMA_CLASS``. To each operation it adds, unless the view
documents that status itself: 400/413/415 when it takes a body (malformed JSON, too large, not
JSON), 401 when it needs a user, 403 when a session client may fail the CSRF check, 404 when its
path has parameters (a malformed one never reaches the view), 429 when it is throttled, and 503
``REDIS_UNAVAILABLE`` to every operation (any that needs Redis while it is down).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated


class ErrorInfoSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: VALIDATION_ERROR, SCAN_NOT_FOUND, …")
    message = serializers.CharField()
    suggestions = serializers.ListField(child=serializers.CharField())
    details = serializers.DictField(help_text="Per code: the invalid fields, the reference of a server error, …")


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer."""

    error = ErrorInfoSerializer()


def error_response(description: str) -> OpenApiResponse:
    """An error answer in the schema: the error envelope, with the codes it may carry."""
    return OpenApiResponse(ErrorSerializer, description=description)


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status, description in self._platform_errors(operation):
            if status not in responses:
                error = error_response(description)
                responses[status] = self._get_response_for_code(error, status)
        return operation

    def _platform_errors(self, operation: dict[str, Any]) -> list[tuple[str, str]]:
        errors = []
        if "requestBody" in operation:
            errors += [
                ("400", "MALFORMED_JSON (not JSON, or NaN/Infinity) or VALIDATION_ERROR (see details.fields)"),
                ("413", "PAYLOAD_TOO_LARGE: the body is over the server's limit"),
                ("415", "UNSUPPORTED_MEDIA_TYPE: send application/json"),
            ]
        if any(isinstance(permission, IsAuthenticated) for permission in self.view.get_permissions()):
            errors.append(("401", "NOT_AUTHENTICATED: no valid token or session"))
        session = any(isinstance(auth, SessionAuthentication) for auth in self.view.get_authenticators())
        if session and self.method not in SAFE_METHODS:
            errors.append(("403", "CSRF_FAILED: a session client sent no valid CSRF token"))
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
            errors.append(("404", "NOT_FOUND: malformed path parameter, or nothing (of the caller's) there"))
        if self.view.get_throttles():
            errors.append(("429", "THROTTLED: too many requests; retry after the Retry-After header's seconds"))
        errors.append(("503", "REDIS_UNAVAILABLE: this needs Redis, which cannot be reached now (with Retry-After)"))
        return errors
