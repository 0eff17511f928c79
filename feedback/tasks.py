"""Celery tasks of the web side (queue `default`)."""

from __future__ import annotations

from celery import shared_task

from feedback.services.generation import generation_reconcile


@shared_task(name="feedback.reconcile_generation")
def reconcile_generation() -> int:
    """Periodic (celery beat): re-send generation chunks whose message or worker was lost."""
    return generation_reconcile()
