"""The Celery app ``technic_project`` (``celery -A technic_project worker``)."""

from __future__ import annotations

import inspect
import logging
import math
import os
from contextvars import Token
from typing import Any

from celery import Celery, Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "technic_project.settings")

logger = logging.getLogger(__name__)

app = Celery("technic_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**_: Any) -> None:
    """Workers log through the project's LOGGING (format, scan ids), not Celery's own setup."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


# Per task id a stack: a task replaced in eager mode (Task.replace keeps the id) runs nested.
_scan_tokens: dict[str, list[Token[str | None]]] = {}


@task_prerun.connect
def enter_scan(task_id: str, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], **_: Any) -> None:
    """While a task that takes a ``scan_id`` runs, every log line carries that id."""
    from infra.logs import current_scan

    try:
        scan_id = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments.get("scan_id")
    except TypeError:  # arguments that do not fit the signature: Celery reports that itself
        return
    if scan_id is not None:
        _scan_tokens.setdefault(task_id, []).append(current_scan.set(str(scan_id)))


@task_postrun.connect
def leave_scan(task_id: str, **_: Any) -> None:
    from infra.logs import current_scan

    tokens = _scan_tokens.get(task_id)
    if tokens:
        current_scan.reset(tokens.pop())
        if not tokens:
            del _scan_tokens[task_id]


@task_prerun.connect
@task_postrun.connect
def close_old_connections(task: Task, **_: Any) -> None:
    """Around every task, what Django does around a request: close the database connections
    that are broken or older than CONN_MAX_AGE, and have the others checked before reuse.
    (A new connection per task, Celery's default, costs each task a connect and a close.) Eager
    runs share their caller's connection and are left alone."""
    if not getattr(task.request, "is_eager", False):
        from django.db import close_old_connections as close

        close()


@worker_init.connect
def check_timeouts(**_: Any) -> None:
    """Refuse to start a worker whose timeouts contradict each other: a task time limit that
    reaches the broker visibility timeout (the broker would hand a still-running task to a second
    worker), or a watchdog stall limit within the visibility timeout plus two redelivery sweeps
    (the watchdog would fail a scan whose worker died before its batches come back).

    Celery logs and swallows exceptions from signal receivers, so this exits explicitly.
    """
    from django.conf import settings

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for name in ("CELERY_TASK_TIME_LIMIT", "CELERY_TASK_SOFT_TIME_LIMIT"):
        if getattr(settings, name) >= visibility:
            _refuse(
                f"{name}={getattr(settings, name)} must be below the broker visibility timeout "
                f"CELERY_VISIBILITY_TIMEOUT={visibility}"
            )
    # A sweep finds a message once it is visible, or one sweep later if a dead worker held the
    # sweep's lock (it expires after one sweep interval).
    back_after = visibility + 2 * settings.TECHNIC_REDELIVERY_SWEEP_SECONDS
    stall = settings.TECHNIC_SCAN_STALL_SECONDS
    if stall <= back_after:
        _refuse(
            f"TECHNIC_SCAN_STALL_SECONDS={stall} must be above CELERY_VISIBILITY_TIMEOUT={visibility} "
            f"plus two redelivery sweeps of {settings.TECHNIC_REDELIVERY_SWEEP_SECONDS} s: the batches of a "
            f"worker that died come back after up to {back_after} s, and the watchdog would fail their scan first"
        )


def _refuse(problem: str) -> None:
    logger.critical("configuration error: %s", problem)
    raise SystemExit(f"configuration error: {problem}")


@worker_init.connect
@worker_process_init.connect
def ride_out_redis_outages(**_: Any) -> None:
    """A worker waits for Redis to come back, for TECHNIC_REDIS_OUTAGE_SECONDS, when it is
    unreachable: the project's clients, the result backend's (results, chord counters), its
    publishing and the broker's bookkeeping of delivered messages (``infra.broker``).
    So a Redis restart pauses a scan instead of failing it. The main process runs this before
    forking the pool, and each pool process again."""
    from django.conf import settings

    from infra.redis_client import ride_out_outages

    seconds = settings.TECHNIC_REDIS_OUTAGE_SECONDS
    app.backend.client.set_retry(ride_out_outages(seconds))
    # Publishing (the next stage, a chord's body) reconnects every 2 s for as long.
    app.conf.task_publish_retry_policy = {
        "max_retries": math.ceil(seconds / 2) + 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 2,
    }
