"""The Celery app ``technic_project`` (``celery -A technic_project worker``)."""

from __future__ import annotations

import inspect
import logging
import os
from contextvars import Token
from typing import Any

from celery import Celery, Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init

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
    from technic_project.logs import current_scan

    try:
        scan_id = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments.get("scan_id")
    except TypeError:  # arguments that do not fit the signature: Celery reports that itself
        return
    if scan_id is not None:
        _scan_tokens.setdefault(task_id, []).append(current_scan.set(str(scan_id)))


@task_postrun.connect
def leave_scan(task_id: str, **_: Any) -> None:
    from technic_project.logs import current_scan

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
    (A new connection per task, Celery's default, cost each task a connect and a close: with
    SQLite about 8 % of the workers' time in a one-symbol-batch scan, sampled with py-spy.) Eager
    runs share their caller's connection and are left alone."""
    if not getattr(task.request, "is_eager", False):
        from django.db import close_old_connections as close

        close()


@worker_init.connect
def check_time_limits(**_: Any) -> None:
    """Refuse to start a worker whose task time limit reaches the broker visibility timeout:
    the broker would hand a still-running task to a second worker.

    Celery logs and swallows exceptions from signal receivers, so this exits explicitly.
    """
    from django.conf import settings

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for name in ("CELERY_TASK_TIME_LIMIT", "CELERY_TASK_SOFT_TIME_LIMIT"):
        if getattr(settings, name) >= visibility:
            logger.critical(
                "%s=%s must be below the broker visibility timeout (%s s)", name, getattr(settings, name), visibility
            )
            raise SystemExit(
                f"configuration error: {name}={getattr(settings, name)} must be below the broker "
                f"visibility timeout CELERY_VISIBILITY_TIMEOUT={visibility}"
            )
