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


@shared_task(name="feedback.refresh_leaderboard")
def refresh_leaderboard(project_id: int | None = None, key: str = "") -> int:
    """Compute one cached leaderboard or, from celery beat with no argument, every recently asked one that
    judgments made stale (and each active project's default). Returns how many were computed."""
    from feedback.services.leaderboard import leaderboard_refresh, leaderboards_refresh

    if project_id is None:
        return leaderboards_refresh()
    return int(leaderboard_refresh(project_id=project_id, key=key) is not None)


@shared_task(name="feedback.refresh_quality")
def refresh_quality(project_id: int | None = None) -> int:
    """Compute a project's quality figures or, from celery beat with no argument, those of every active
    project with judgments newer than its last figures. Returns how many projects were computed."""
    from feedback.services.quality import project_quality_refresh, projects_due_for_quality

    project_ids = [project_id] if project_id is not None else projects_due_for_quality()
    for pk in project_ids:
        project_quality_refresh(project_id=pk)
    return len(project_ids)
