"""The Celery app the integration tests' workers run: the real app, plus one fault hook and
one probe.

A batch containing a symbol listed in the Redis set ``CRASH_KEY`` kills its worker process
(``os._exit``), the way a segfault or the OOM killer would. The task ``tests.connections_opened``
answers how many database connections its process has opened. Nothing else differs.
"""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_process_init
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from technic_project.celery import app

CRASH_KEY = "technic-test:crash-symbols"

__all__ = ("CRASH_KEY", "app")


@worker_process_init.connect
def install_crash_hook(**_: Any) -> None:
    import scanner.tasks as tasks
    from infra.redis_client import main_redis

    real = tasks.engine_scan_batch

    def crashing(instruments: Any, *args: Any, **kwargs: Any) -> Any:
        crash = {m.decode() if isinstance(m, bytes) else str(m) for m in main_redis().smembers(CRASH_KEY)}
        if crash & {i.symbol for i in instruments}:
            os._exit(1)
        return real(instruments, *args, **kwargs)

    tasks.engine_scan_batch = crashing


_opened = 0


@receiver(connection_created)
def _count_connection(**_: Any) -> None:
    global _opened
    _opened += 1


@app.task(name="tests.connections_opened")
def connections_opened() -> tuple[int, int]:
    """(this process's id, the database connections it has opened so far, this task's included)."""
    from django.db import connection

    connection.ensure_connection()
    return os.getpid(), _opened
