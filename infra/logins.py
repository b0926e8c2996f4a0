"""Logins that resist guessing, with django-axes: the login page, the admin's and
``POST /api/auth/token/`` share one count of failed attempts, in the database.

After ``TECHNIC_LOGIN_FAILURE_LIMIT`` failures from one client address, or for one user name
(from any address), further attempts from that address or for that name are refused, even with
the right password, until ``TECHNIC_LOGIN_COOLOFF`` seconds have passed since the last failure
counted. A successful login clears its address's and user name's failures. Operators unlock at
once with ``manage.py axes_reset_username <name>``, ``axes_reset_ip <address>`` or ``axes_reset``.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework import status

from infra.errors import ApiError, is_page, json_response


class LoginAttemptsBackend(AxesStandaloneBackend):
    """Axes' check before the password backends. ``authenticate()`` calls without a request
    come from code in the server's own processes (the shell, test clients), never from a
    client, and are not counted."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def login_locked_out() -> ApiError:
    """429 ``LOGIN_LOCKED_OUT``: too many failed logins from the client's address or for the user name."""
    seconds: int = settings.TECHNIC_LOGIN_COOLOFF
    return ApiError(
        "LOGIN_LOCKED_OUT",
        "Too many failed logins from this address or for this user name; logging in is refused for now.",
        status.HTTP_429_TOO_MANY_REQUESTS,
        [
            f"Try again in {seconds} seconds",
            "An operator can unlock it at once: manage.py axes_reset_username <name> or axes_reset_ip <address>",
        ],
        {"retry_after_seconds": seconds, "failure_limit": settings.TECHNIC_LOGIN_FAILURE_LIMIT},
        {"Retry-After": str(seconds)},
    )


def lockout_response(request: HttpRequest, *_: Any) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the login page answers its 429 page, other paths (the admin's
    login) the API's JSON error. Axes passes (response, credentials) or, from its async path,
    (credentials); neither is needed."""
    error = login_locked_out()
    if is_page(request):
        context = {"message": error.message, "suggestions": error.suggestions}
        response = render(request, "429.html", context, status=error.status_code)
    else:
        response = json_response(error)
    response["Retry-After"] = error.headers["Retry-After"]
    return response
