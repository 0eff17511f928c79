"""The Celery app: `celery -A feedback.celery:app worker --queues default` (and `generation` on GPU hosts).

Without `CELERY_BROKER_URL` tasks run eagerly in the calling process, which is what the one-command demo
uses. Tasks are discovered in the installed apps' `tasks` modules; `feedback` sends generation work by
task name and never imports `inference`.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback.settings")

app = Celery("rankwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
