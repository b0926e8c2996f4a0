"""The Celery app ``technic_project`` (``celery -A technic_project worker``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "technic_project.settings")

app = Celery("technic_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
