"""Who is asking a WebSocket or SSE connection: clients that cannot send headers put a
short-lived ticket (``?ticket=``, see ``infra.tokens``) or their token (``?token=``,
kept for existing clients) in the URL; otherwise the session's user.

Credentials that are presented but unknown, expired or inactive never fall back to the session:
the request is anonymous, as DRF's token authentication would answer 401.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework.exceptions import AuthenticationFailed

from infra.tokens import ExpiringTokenAuthentication, user_for_ticket


def user_for_token(key: str) -> Any | None:
    """The active user owning the DRF token ``key`` if it has not expired, or None."""
    try:
        user, _ = ExpiringTokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        return None
    return user


def user_for_credentials(kind: str, value: str) -> Any | None:
    """The user of a ``("ticket", <ticket>)`` or ``("token", <key>)``, or None."""
    return user_for_ticket(value) if kind == "ticket" else user_for_token(value)


async def auser_for_credentials(kind: str, value: str) -> Any | None:
    """``user_for_credentials`` from async code."""
    return await database_sync_to_async(user_for_credentials)(kind, value)


def request_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """What a request presents: ``("token", key)`` for ``Authorization: Token <key>``, else
    ``("ticket", …)`` for ``?ticket=``, else ``("token", …)`` for ``?token=``; None when it
    presents none (a malformed header gives an empty key, which no user matches)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "token":
        return "token", key.strip()
    return _query_credentials({name: request.GET.getlist(name) for name in ("ticket", "token")})


def _query_credentials(query: dict[str, list[str]]) -> tuple[str, str] | None:
    for kind in ("ticket", "token"):
        values = [value for value in query.get(kind, []) if value]
        if values:
            return kind, values[-1]
    return None


async def arequest_user(request: HttpRequest) -> Any:
    """The user of a plain Django request: by the credentials it presents, else its session.
    Returns AnonymousUser when not authenticated (or the credentials are invalid)."""
    credentials = request_credentials(request)
    if credentials is None:
        return await request.auser()
    user = await auser_for_credentials(*credentials) if credentials[1] else None
    return user or AnonymousUser()


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` to the user of ``?ticket=`` or ``?token=`` when the query string has
    one (AnonymousUser for invalid credentials); otherwise the user already in the scope (the
    session's) stays. Goes inside ``AuthMiddlewareStack`` so the URL's credentials override the
    session."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        credentials = _query_credentials(parse_qs(scope.get("query_string", b"").decode("latin-1")))
        if credentials:
            scope = dict(scope, user=await auser_for_credentials(*credentials) or AnonymousUser())
        return await super().__call__(scope, receive, send)
