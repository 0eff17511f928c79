"""Celery tasks of the web side (queue `default`)."""

from __future__ import annotations

from celery import shared_task

from feedback.services.generation import generation_reconcile


@shared_task(name="feedback.reconcile_generation")
def reconcile_generation() -> int:
    """Periodic (celery beat): re-send generation chunks whose message or worker was lost."""
    return generation_reconcile()


@shared_task(name="feedback.export_run")
def export_run(export_id: int) -> str:
    """Write one export's files (queue `default`). Idempotent: a completed export is left alone, and a
    re-run of an unfinished one writes the same bytes."""
    from feedback.services.exports import export_run as run

    return run(export_id=export_id).status
