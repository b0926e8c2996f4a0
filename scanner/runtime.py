"""Transient per-scan state in Redis: the cancel flag, batch attempts and the watchdog's last
resume (progress: ``progress.store``).

This module owns these keys and their TTLs. Losing them never loses a result: the database
holds status and rows; a lost cancel flag is restored from ``Scan.cancel_requested``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from infra.redis_client import main_redis

TTL_SECONDS = 2 * 24 * 3600


def _key(scan_id: Any, name: str) -> str:
    return f"{settings.TECHNIC_KEY_PREFIX}:scan:{scan_id}:{name}"


def request_cancel(scan_id: Any) -> None:
    main_redis().set(_key(scan_id, "cancel"), 1, ex=TTL_SECONDS)


def is_cancelled(scan_id: Any) -> bool:
    """Cheap enough to call between chunks of a batch (one GET)."""
    return bool(main_redis().exists(_key(scan_id, "cancel")))


def batch_attempt(scan_id: Any, index: int) -> int:
    """Count one more start of batch ``index``; returns how many starts there have been."""
    key = _key(scan_id, f"batch:{index}:attempts")
    pipe = main_redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, TTL_SECONDS)
    attempts, _ = pipe.execute()
    return int(attempts)


def claim_resume(scan_id: Any, seconds: int) -> bool:
    """Whether the caller may resume the scan now: at most once every ``seconds``, whichever
    process asks (a lost key only allows one resume early)."""
    return bool(main_redis().set(_key(scan_id, "resumed"), 1, nx=True, ex=seconds))
