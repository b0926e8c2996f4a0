"""How many live progress connections (WebSocket and SSE together) each user holds, in Redis.

Per user, ``<TECHNIC_KEY_PREFIX>:live:<user_id>`` is a sorted set of connection ids, each
scored by the time (Redis's clock) its lease ends. ``live_acquire`` drops the ended leases and
adds one only while fewer than ``TECHNIC_MAX_LIVE_CONNECTIONS`` remain, in one Lua call, so two
connections can never both take the last place, whichever web process they reach. A connection
renews its lease every ``RENEW_SECONDS`` while it lives (``live_renew``) and gives it back when
it ends (``live_release``). Leases of a web process that died with them open end
``LEASE_SECONDS`` after their last renewal, and the key expires with its last lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from rest_framework import status

from infra.errors import ApiError
from infra.redis_client import main_redis

LEASE_SECONDS = 90
RENEW_SECONDS = 30
CLOSE_TOO_MANY = 4429
RETRY_AFTER_SECONDS = 30

_ACQUIRE = """
local key, lease, limit, id = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now + lease, id)
redis.call('EXPIRE', key, lease)
return 1
"""

_RENEW = """
local key, lease, id = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', key, now + lease, id)
redis.call('EXPIRE', key, lease)
return 1
"""


@dataclass(frozen=True)
class Lease:
    """One live connection's place in its user's count."""

    user_id: int
    id: str


def _key(user_id: Any) -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:live:{user_id}"


def live_acquire(user_id: int) -> Lease | None:
    """A lease for a new connection of ``user_id``; None when the user already holds
    TECHNIC_MAX_LIVE_CONNECTIONS. Raises redis errors when Redis cannot be reached."""
    lease = Lease(user_id, uuid.uuid4().hex)
    script = main_redis().register_script(_ACQUIRE)
    taken = script(keys=[_key(user_id)], args=[LEASE_SECONDS, settings.TECHNIC_MAX_LIVE_CONNECTIONS, lease.id])
    return lease if taken else None


def live_renew(lease: Lease) -> None:
    """Extends the lease by LEASE_SECONDS from now (taking it again if it had ended)."""
    main_redis().register_script(_RENEW)(keys=[_key(lease.user_id)], args=[LEASE_SECONDS, lease.id])


def live_release(lease: Lease) -> None:
    """Gives the lease back; idempotent."""
    main_redis().zrem(_key(lease.user_id), lease.id)


def live_count(user_id: int) -> int:
    """The leases ``user_id`` holds, ended ones included until the next ``live_acquire``."""
    return int(main_redis().zcard(_key(user_id)))


# The async code of consumers and SSE streams calls these (Redis is not the database: any thread will do).
alive_acquire = sync_to_async(live_acquire, thread_sensitive=False)
alive_renew = sync_to_async(live_renew, thread_sensitive=False)
alive_release = sync_to_async(live_release, thread_sensitive=False)


def too_many_connections() -> ApiError:
    limit = settings.TECHNIC_MAX_LIVE_CONNECTIONS
    return ApiError(
        "TOO_MANY_CONNECTIONS",
        f"You have {limit} live progress connections (WebSocket and SSE) open, the most allowed at once.",
        status.HTTP_429_TOO_MANY_REQUESTS,
        [
            "Close the streams of scans you no longer watch",
            "Poll GET /scan/progress/<scan_id> instead: it needs no open connection",
        ],
        {"limit": limit},
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
