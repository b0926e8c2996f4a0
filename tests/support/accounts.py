"""Users, tokens and pushes shared by the API and progress tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from progress import store


def user_with_token(username: str, **extra: Any) -> tuple[User, str]:
    user = User.objects.create_user(username, password="pw", **extra)
    return user, Token.objects.create(user=user).key


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


async def handcrafted_push(scan_id: Any, snap: dict[str, Any]) -> None:
    """Push ``snap`` to the scan's consumers as a worker would (the store is not touched)."""
    await get_channel_layer().group_send(
        store.group_name(scan_id), {"type": "progress.snapshot", "message": store.wire(snap)}
    )
