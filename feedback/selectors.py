"""Reads that need care: what a user may see, and aggregate figures, are decided here once."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Model, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from feedback.models import (
    AnnotatorQuality,
    AnnotatorStanding,
    Comparison,
    Judgment,
    Project,
    ProjectMembership,
    ProjectQuality,
    Prompt,
)


def _count_per_project(model: type[Model], **filters: Any) -> Coalesce:
    # A correlated subquery per figure: joining prompts and comparisons in one query would multiply
    # their rows (prompts × comparisons) before counting.
    counts = (
        model._default_manager.filter(project=OuterRef("pk"), **filters)
        .order_by()
        .values("project")
        .annotate(total=Count("pk"))
        .values("total")
    )
    return Coalesce(Subquery(counts), 0)


def projects_with_progress(projects: QuerySet[Project]) -> QuerySet[Project]:
    """Annotate `prompt_total`, `comparison_total` and `comparison_completed` on each project (gold
    items, which are never completed, are not counted)."""
    return projects.annotate(
        prompt_total=_count_per_project(Prompt),
        comparison_total=_count_per_project(Comparison, is_gold=False),
        comparison_completed=_count_per_project(
            Comparison, is_gold=False, status=Comparison.Status.COMPLETED
        ),
    )


def projects_open_to(*, user: User | AnonymousUser) -> QuerySet[Project]:
    """Active projects the user may work on: staff may work on all, others on those they are members of."""
    projects = Project.objects.filter(is_active=True)
    if not user.is_authenticated:
        return projects.none()
    if not user.is_staff:
        projects = projects.filter(members=user)
    return projects


def project_quality_latest(*, project: Project) -> ProjectQuality | None:
    """The project's newest quality report, or None before the first computation."""
    return ProjectQuality.objects.filter(project=project).order_by("-computed_at", "-id").first()


def annotator_quality_rows(*, project: Project) -> QuerySet[AnnotatorQuality]:
    """The project's per annotator figures as last computed, busiest first, each with its annotator and,
    annotated, their `role` in the project ("" when not a member, e.g. staff), `standing_status`
    ("active" when they never claimed work there) and `standing_id` (None then). One query."""
    role = ProjectMembership.objects.filter(project=project, user=OuterRef("annotator")).values("role")[:1]
    standing = AnnotatorStanding.objects.filter(project=project, annotator=OuterRef("annotator"))
    return (
        AnnotatorQuality.objects.filter(project=project)
        .select_related("annotator")
        .annotate(
            role=Coalesce(Subquery(role), Value("")),
            standing_status=Coalesce(
                Subquery(standing.values("status")[:1]), Value(AnnotatorStanding.Status.ACTIVE.value)
            ),
            standing_id=Subquery(standing.values("pk")[:1]),
        )
        .order_by("-judgments", "annotator__username")
    )


def project_judgments_after(*, project: Project, high_water_mark: int) -> int:
    """How many of the project's judgments (gold answers included) are newer than the mark."""
    return Judgment.objects.filter(comparison__project=project, pk__gt=high_water_mark).count()
