"""Rankwise's Django project and the feedback data: projects, prompts, checkpoints, responses, judgments."""

# The Celery app is imported with Django so that `shared_task` and `delay_on_commit` bind to it.
from feedback.celery import app as celery_app

__all__ = ("celery_app",)
