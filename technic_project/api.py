"""The API platform's own views: tokens (``POST /api/auth/token/``, ``POST /api/auth/token/revoke/``),
tickets for live progress (``POST /api/auth/ticket/``) and Django's CSRF failure view."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views import csrf
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from infra.errors import ApiError, is_page, json_response
from infra.logins import login_locked_out
from infra.openapi import error_response
from infra.tokens import TICKET_SECONDS, ticket_for, token_expired, token_expires_at


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="send it as 'Authorization: Token <token>'")
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="when the token stops authenticating (TECHNIC_TOKEN_TTL); null: never"
    )


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="add it as '?ticket=<ticket>' to /scan/ws/… and /scan/sse/… URLs")
    expires_in = serializers.IntegerField(help_text="seconds during which the ticket opens connections")


class TokenView(APIView):
    """The user's API token for a username and password, made on first use and the same
    afterwards until it expires (``TECHNIC_TOKEN_TTL``) or is revoked."""

    # No authentication at all: no session, hence no CSRF check, and every caller is anonymous,
    # hence the anonymous throttle.
    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        operation_id="auth_token_create",
        tags=["auth"],
        request=CredentialsSerializer,
        responses={
            200: TokenSerializer,
            400: error_response("INVALID_CREDENTIALS, VALIDATION_ERROR or MALFORMED_JSON"),
            429: error_response("LOGIN_LOCKED_OUT (too many failed logins) or THROTTLED; both with Retry-After"),
        },
    )
    def post(self, request: Request) -> Response:
        credentials = CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        user = authenticate(request, **credentials.validated_data)
        if user is None:
            if getattr(request, "axes_locked_out", False):  # set by django-axes (infra.logins)
                raise login_locked_out()
            raise ApiError(
                "INVALID_CREDENTIALS",
                "Unknown username, wrong password or inactive account.",
                suggestions=["Accounts are made by an operator (manage.py createsuperuser or the admin)"],
            )
        token = _live_token(user)
        return Response(TokenSerializer({"token": token.key, "expires_at": token_expires_at(token)}).data)


def _live_token(user: Any) -> Token:
    """The user's token, a new one if theirs has expired."""
    with transaction.atomic():
        token, _ = Token.objects.select_for_update().get_or_create(user=user)
        if token_expired(token):
            token.delete()
            token = Token.objects.create(user=user)
    return token


class TokenRevokeView(APIView):
    """Revokes the caller's token."""

    @extend_schema(
        operation_id="auth_token_revoke",
        tags=["auth"],
        request=None,
        responses={
            204: None,
            401: error_response("NOT_AUTHENTICATED"),
            403: error_response("CSRF_FAILED: a session client sent no valid CSRF token"),
        },
    )
    def post(self, request: Request) -> Response:
        """The caller's token authenticates nothing from now on (idempotent: without a token it
        answers 204 too); the next ``POST /api/auth/token/`` makes a new one."""
        user = request.user
        assert isinstance(user, User), "the default IsAuthenticated lets only signed-in users here"
        Token.objects.filter(user=user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class TicketView(APIView):
    """A short-lived ticket for the caller's WebSocket and SSE connections."""

    @extend_schema(
        operation_id="auth_ticket_create",
        tags=["auth"],
        request=None,
        responses={
            200: TicketSerializer,
            401: error_response("NOT_AUTHENTICATED"),
            403: error_response("CSRF_FAILED: a session client sent no valid CSRF token"),
        },
    )
    def post(self, request: Request) -> Response:
        """A ticket for ``?ticket=`` on ``/scan/ws/{scan_id}`` and ``/scan/sse/{scan_id}``: it opens
        the caller's connections for 60 seconds after it is issued, and keeps the long-lived token
        out of URLs (which servers and proxies log)."""
        return Response(TicketSerializer({"ticket": ticket_for(request.user), "expires_in": TICKET_SECONDS}).data)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: a session request to a Django view (the admin) without a valid CSRF
    token. Pages (the login form) answer the 403_csrf.html page instead."""
    if is_page(request):
        return csrf.csrf_failure(request, reason)
    return json_response(
        ApiError(
            "CSRF_FAILED",
            f"CSRF check failed: {reason}",
            status.HTTP_403_FORBIDDEN,
            [
                "Send the csrftoken cookie's value in the X-CSRFToken header",
                "API clients use 'Authorization: Token <token>' instead of a session",
            ],
        )
    )
