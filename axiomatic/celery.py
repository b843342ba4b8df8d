"""The Celery app (`celery -A axiomatic worker`), configured from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "axiomatic.settings")

app = Celery("axiomatic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids into tasks, task metrics, the worker's statement timeout (docs/operations.md).
import axiomatic.ops.task_signals  # noqa: E402, F401
