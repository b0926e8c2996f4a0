"""The API platform's own views: ``POST /api/auth/token/`` and Django's CSRF failure view."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse
from django.views import csrf
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from technic_project.errors import ApiError, is_page, json_response
from technic_project.openapi import error_response


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="send it as 'Authorization: Token <token>'")


class TokenView(APIView):
    """The user's API token for a username and password; the token is made on first use and
    stays the same afterwards."""

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
        },
    )
    def post(self, request: Request) -> Response:
        credentials = CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        user = authenticate(request, **credentials.validated_data)
        if user is None:
            raise ApiError(
                "INVALID_CREDENTIALS",
                "Unknown username, wrong password or inactive account.",
                suggestions=["Accounts are made by an operator (manage.py createsuperuser or the admin)"],
            )
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


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
