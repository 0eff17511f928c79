"""Project completion for the progress bars, counted off the request path.

Counting a project's comparisons grows with the project (a sequential scan: 80 ms at a million), so the
annotator's pages only read `ProjectCompletion`, one row by primary key. Celery beat recounts every
active project each `PROGRESS_REFRESH_SECONDS`; a page that finds its project's row missing or older than
that asks for a recount itself, at most once per process and period, so the bars stay current where beat
does not run (the demo runs the recount inline, on its small projects).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotate.models import ProjectCompletion
from feedback.models import Comparison, Project
from feedback.services.generation import send_task_on_commit

PROGRESS_REFRESH_SECONDS = 30
REFRESH_TASK = "annotate.refresh_progress"


@dataclass(frozen=True)
class ProjectProgress:
    completed: int
    total: int
    counted: bool = True  # False until the project's first count has landed

    @property
    def percent(self) -> int:
        return int(100 * self.completed / self.total) if self.total else 0


def project_progress(*, project: Project) -> ProjectProgress:
    """Completed and total comparisons as last counted; asks for a recount when that is overdue.

    No query when the project was loaded with `select_related("completion")`, as the annotator's pages do.
    """
    try:
        completion: ProjectCompletion | None = project.completion
    except ProjectCompletion.DoesNotExist:
        completion = None
    return _progress_of(project.pk, completion, _overdue_before())


def projects_progress(*, project_ids: Iterable[int]) -> dict[int, ProjectProgress]:
    """`project_progress` for several projects in one query (the project list)."""
    project_ids = list(project_ids)
    completions = ProjectCompletion.objects.in_bulk(project_ids)
    overdue = _overdue_before()
    return {
        project_id: _progress_of(project_id, completions.get(project_id), overdue)
        for project_id in project_ids
    }


def _overdue_before() -> datetime:
    return timezone.now() - timedelta(seconds=PROGRESS_REFRESH_SECONDS)


def _progress_of(
    project_id: int, completion: ProjectCompletion | None, overdue_before: datetime
) -> ProjectProgress:
    if completion is None or completion.counted_at < overdue_before:
        _request_count(project_id)
    if completion is None:
        return ProjectProgress(completed=0, total=0, counted=False)
    return ProjectProgress(completed=completion.completed, total=completion.total)


def _request_count(project_id: int) -> None:
    # cache.add is atomic: the first caller in the period sends the task; the others find the key.
    if cache.add(f"annotate:progress-requested:{project_id}", True, PROGRESS_REFRESH_SECONDS):
        send_task_on_commit(REFRESH_TASK, [project_id])


def project_completion_count(*, project_id: int) -> ProjectCompletion | None:
    """Count the project's comparisons now (retired and gold ones left out) and store the result; None when the
    project no longer exists (a request sent before it was deleted)."""
    if not Project.objects.filter(pk=project_id).exists():
        return None
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One process: the count runs in the background beside annotators' requests, and parallel
            # workers would take every core from them for its duration (80 ms at a million comparisons).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        counts = (
            Comparison.objects.filter(project_id=project_id, is_gold=False)
            .exclude(status=Comparison.Status.RETIRED)
            .aggregate(total=Count("pk"), completed=Count("pk", filter=Q(status=Comparison.Status.COMPLETED)))
        )
        completion, _ = ProjectCompletion.objects.update_or_create(
            project_id=project_id,
            defaults={
                "completed": counts["completed"],
                "total": counts["total"],
                "counted_at": timezone.now(),
            },
        )
    return completion


def active_project_ids() -> list[int]:
    """The projects beat recounts: those annotators can still work on."""
    return list(Project.objects.filter(is_active=True).values_list("pk", flat=True))
