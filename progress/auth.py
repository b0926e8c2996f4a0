"""Who is asking: DRF tokens for WebSocket and SSE clients, which cannot always send headers.

A token that is presented but unknown or inactive never falls back to the session: the
request is anonymous, as DRF's ``TokenAuthentication`` would answer 401.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


def user_for_token(key: str) -> Any | None:
    """The active user owning the DRF token ``key``, or None."""
    try:
        user, _ = TokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        return None
    return user


async def auser_for_token(key: str) -> Any | None:
    """``user_for_token`` from async code."""
    return await database_sync_to_async(user_for_token)(key)


def request_token(request: HttpRequest) -> str | None:
    """The token a request presents: ``Authorization: Token <key>``, else ``?token=<key>``;
    None when it presents none ('' for a malformed header, which no user matches)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "token":
        return key.strip()
    return request.GET.get("token") or None


async def arequest_user(request: HttpRequest) -> Any:
    """The user of a plain Django request: by its token if it presents one, else its session.
    Returns AnonymousUser when not authenticated (or the token is invalid)."""
    key = request_token(request)
    if key is None:
        return await request.auser()
    user = await auser_for_token(key) if key else None
    return user or AnonymousUser()


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` to the owner of ``?token=<key>`` when the query string has one
    (AnonymousUser for an invalid key); otherwise the user already in the scope (the session's)
    stays. Goes inside ``AuthMiddlewareStack`` so the token overrides the session."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        keys = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if keys:
            scope = dict(scope, user=await auser_for_token(keys[-1]) or AnonymousUser())
        return await super().__call__(scope, receive, send)
