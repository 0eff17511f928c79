"""Celery tasks of the annotation side (queue `default`)."""

from __future__ import annotations

from celery import shared_task

from annotate.assignment import EXPIRY_SWEEP_LIMIT, leases_expire
from annotate.progress import active_project_ids, project_completion_count


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
