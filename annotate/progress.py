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
from datetime import timedelta

from django.core.cache import cache
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


def project_progress(*, project_id: int) -> ProjectProgress:
    """Completed and total comparisons as last counted; asks for a recount when that is overdue."""
    return projects_progress(project_ids=[project_id])[project_id]


def projects_progress(*, project_ids: Iterable[int]) -> dict[int, ProjectProgress]:
    """`project_progress` for several projects in one query (the project list)."""
    project_ids = list(project_ids)
    rows = {
        project_id: (completed, total, counted_at)
        for project_id, completed, total, counted_at in ProjectCompletion.objects.filter(
            project_id__in=project_ids
        ).values_list("project_id", "completed", "total", "counted_at")
    }
    overdue = timezone.now() - timedelta(seconds=PROGRESS_REFRESH_SECONDS)
    result = {}
    for project_id in project_ids:
        row = rows.get(project_id)
        if row is None or row[2] < overdue:
            _request_count(project_id)
        result[project_id] = (
            ProjectProgress(completed=0, total=0, counted=False)
            if row is None
            else ProjectProgress(completed=row[0], total=row[1])
        )
    return result


def _request_count(project_id: int) -> None:
    # cache.add is atomic: the first caller in the period sends the task; the others find the key.
    if cache.add(f"annotate:progress-requested:{project_id}", True, PROGRESS_REFRESH_SECONDS):
        send_task_on_commit(REFRESH_TASK, [project_id])


def project_completion_count(*, project_id: int) -> ProjectCompletion | None:
    """Count the project's comparisons now (retired ones left out) and store the result; None when the
    project no longer exists (a request sent before it was deleted)."""
    if not Project.objects.filter(pk=project_id).exists():
        return None
    counts = (
        Comparison.objects.filter(project_id=project_id)
        .exclude(status=Comparison.Status.RETIRED)
        .aggregate(total=Count("pk"), completed=Count("pk", filter=Q(status=Comparison.Status.COMPLETED)))
    )
    completion, _ = ProjectCompletion.objects.update_or_create(
        project_id=project_id,
        defaults={"completed": counts["completed"], "total": counts["total"], "counted_at": timezone.now()},
    )
    return completion


def active_project_ids() -> list[int]:
    """The projects beat recounts: those annotators can still work on."""
    return list(Project.objects.filter(is_active=True).values_list("pk", flat=True))
