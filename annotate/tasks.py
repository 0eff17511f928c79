"""Celery tasks of the annotation side (queue `default`)."""

from __future__ import annotations

from celery import shared_task

from annotate.assignment import EXPIRY_SWEEP_LIMIT, leases_expire
from annotate.progress import active_project_ids, project_completion_count
from feedback.models import Judgment
from feedback.services.standing import standing_evaluate


@shared_task(name="annotate.expire_leases")
def expire_leases(batch: int = EXPIRY_SWEEP_LIMIT) -> int:
    """Periodic (celery beat): return the places of overdue leases to the pool, in bounded batches.

    Claims sweep too, so this only keeps counts and the admin's open leases current on quiet projects."""
    total = 0
    while expired := leases_expire(limit=batch):
        total += expired
    return total


@shared_task(name="annotate.refresh_progress")
def refresh_progress(project_id: int | None = None) -> int:
    """Count a project's completion (a page found it overdue) or, from celery beat with no argument, every
    active project's. Returns how many projects were counted."""
    project_ids = [project_id] if project_id is not None else active_project_ids()
    for pk in project_ids:
        project_completion_count(project_id=pk)
    return len(project_ids)


@shared_task(name="annotate.evaluate_standing")
def evaluate_standing(judgment_id: int) -> str | None:
    """After a gold answer: grade its annotator's gold answers in the project and warn or suspend them
    as the project's thresholds say. Returns the standing's status (None for a judgment since deleted)."""
    found = (
        Judgment.objects.filter(pk=judgment_id).values_list("annotator_id", "comparison__project_id").first()
    )
    if found is None:
        return None
    annotator_id, project_id = found
    return standing_evaluate(project_id=project_id, annotator_id=annotator_id).status
