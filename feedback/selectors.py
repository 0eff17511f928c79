"""Reads that need care: what a user may see, and aggregate figures, are decided here once."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from feedback.models import Comparison, Project, Prompt


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
