"""What an API user may read: every queryset a view starts from, and so every lookup by id, comes from here.

Dataset readers (data engineers, admins) see everything; anyone else sees nothing, even if a view's
permission check were forgotten.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from feedback.api.permissions import reads_datasets, reviews_project
from feedback.models import (
    Comparison,
    ComparisonResponse,
    Export,
    GenerationRun,
    Judgment,
    PolicyCheckpoint,
    Project,
    Prompt,
)
from feedback.selectors import projects_with_progress


def projects_for_reader(*, user: Any) -> QuerySet[Project]:
    """With `prompt_total`, `comparison_total`, `comparison_completed` and `judgment_total`."""
    if not reads_datasets(user):
        return Project.objects.none()
    judgments = (
        Judgment.objects.filter(comparison__project=OuterRef("pk"))
        .order_by()
        .values("comparison__project")
        .annotate(total=Count("pk"))
        .values("total")
    )
    return projects_with_progress(Project.objects.all()).annotate(
        judgment_total=Coalesce(Subquery(judgments), 0)
    )


def project_get_for_reader(*, user: Any, slug: str) -> Project | None:
    return Project.objects.filter(slug=slug).first() if reads_datasets(user) else None


def prompts_for_reader(*, user: Any, project: Project) -> QuerySet[Prompt]:
    if not reads_datasets(user):
        return Prompt.objects.none()
    return Prompt.objects.filter(project=project)


def checkpoints_for_reader(*, user: Any) -> QuerySet[PolicyCheckpoint]:
    if not reads_datasets(user):
        return PolicyCheckpoint.objects.none()
    return PolicyCheckpoint.objects.select_related("parent")


def generation_runs_for_reader(*, user: Any) -> QuerySet[GenerationRun]:
    if not reads_datasets(user):
        return GenerationRun.objects.none()
    return GenerationRun.objects.select_related("project", "checkpoint", "opponent_checkpoint", "created_by")


def comparisons_for_reader(*, user: Any) -> QuerySet[Comparison]:
    """With each comparison's entries (in display order) and their responses' checkpoints, prefetched."""
    if not reads_datasets(user):
        return Comparison.objects.none()
    entries = ComparisonResponse.objects.select_related("response__checkpoint").order_by("position")
    return Comparison.objects.select_related("project", "prompt").prefetch_related(
        Prefetch("entries", queryset=entries)
    )


def judgments_for_reader(*, user: Any) -> QuerySet[Judgment]:
    if not reads_datasets(user):
        return Judgment.objects.none()
    return Judgment.objects.select_related("comparison__project", "annotator")


def exports_for_reader(*, user: Any) -> QuerySet[Export]:
    if not reads_datasets(user):
        return Export.objects.none()
    return Export.objects.select_related("created_by")


def project_get_for_review(*, user: Any, slug: str) -> Project | None:
    """The project, for dataset readers and for its own reviewers and managers."""
    if not (reads_datasets(user) or reviews_project(user, slug)):
        return None
    return Project.objects.filter(slug=slug).first()
