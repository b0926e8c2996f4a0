"""API tokens that expire, and the short-lived tickets WebSocket and SSE clients put in URLs.

A token (``POST /api/auth/token/``) is valid for ``TECHNIC_TOKEN_TTL`` seconds after it was made
(0: until it is revoked); ``POST /api/auth/token/revoke/`` revokes it. A ticket
(``POST /api/auth/ticket/``) names its user, is signed with ``SECRET_KEY`` and opens
``/scan/ws/…`` and ``/scan/sse/…`` as ``?ticket=`` for ``TICKET_SECONDS`` after it was issued:
a URL that leaks (a proxy's log, a browser's history) is useless soon after, which the
long-lived token in ``?token=`` is not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

TICKET_SECONDS = 60
_TICKET_SALT = "technic.progress-ticket"


def token_expires_at(token: Token) -> datetime | None:
    """When ``token`` stops authenticating; None if tokens do not expire (``TECHNIC_TOKEN_TTL`` 0)."""
    ttl: int = settings.TECHNIC_TOKEN_TTL
    return token.created + timedelta(seconds=ttl) if ttl else None


def token_expired(token: Token) -> bool:
    expires_at = token_expires_at(token)
    return expires_at is not None and timezone.now() >= expires_at


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, refusing a token older than ``TECHNIC_TOKEN_TTL``."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise exceptions.AuthenticationFailed("The token has expired; POST /api/auth/token/ answers a new one.")
        return user, token


def ticket_for(user: Any) -> str:
    """A ticket for ``user``'s WebSocket and SSE connections, valid ``TICKET_SECONDS``."""
    return signing.dumps({"user": user.pk}, salt=_TICKET_SALT)


def user_for_ticket(ticket: str) -> Any | None:
    """The active user a ticket was issued to; None if it is forged, malformed or expired."""
    try:
        claims = signing.loads(ticket, salt=_TICKET_SALT, max_age=TICKET_SECONDS)
    except signing.BadSignature:  # SignatureExpired is one
        return None
    pk = claims.get("user") if isinstance(claims, dict) else None
    return get_user_model().objects.filter(pk=pk, is_active=True).first() if pk is not None else None
